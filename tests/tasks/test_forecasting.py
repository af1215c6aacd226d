"""The forecasting task: its data stage (time split, gate, gaps), scaling, windows, baselines, models,
predict / eval / serve from a finished run, and the real ETTh1 split."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from danlu.errors import DanluError, DataError, RecipeError
from danlu.inference import TorchForward
from danlu.recipe import load_recipe, recipe_from_dict
from danlu.tasks import make_task
from danlu.tasks.forecasting import measure

HOURS = 400
REPO = Path(__file__).resolve().parents[2]


def series_frame(rows: int = HOURS, start: str = "2024-01-01", freq: str = "h", seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    return pd.DataFrame({"date": pd.date_range(start, periods=rows, freq=freq).astype(str),
                         "load": 50 + 10 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.3, rows),
                         "temp": 15 + 3 * np.cos(2 * np.pi * t / 24) + rng.normal(0, 0.3, rows)})


def write(folder, frame: pd.DataFrame, name: str = "series.csv") -> str:
    path = folder / name
    frame.to_csv(path, index=False)
    return str(path)


def recipe_for(folder, frame=None, model=None, **forecast) -> object:
    source = write(folder, series_frame() if frame is None else frame)
    settings = {"context": 24, "horizon": 8, "split": {"train": 240, "validation": 80, "test": 80}, **forecast}
    raw = {"name": "fc", "task": "forecasting", "data": {"source": source}, "forecast": settings,
           "model": model or {},
           "train": {"epochs": 3, "batch_size": 32, "optimizer": "adam", "lr": 0.01, "progress": False}}
    path = folder / "fc.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_recipe(path)


def load(recipe):
    from danlu.pipeline import check_data

    splits, report, _ = check_data(recipe)
    return splits, report


# -- the split and the scale ----------------------------------------------------------------------
def test_scaling_is_fitted_on_the_training_rows_only(tmp_path):
    frame = series_frame()
    frame.loc[240:, "load"] += 1000.0  # validation and test far from the training level
    recipe = recipe_for(tmp_path, frame)
    splits, _ = load(recipe)
    task = make_task(recipe)
    task.setup(splits.frames["train"])
    train_load = frame["load"].iloc[:240]
    assert task.scaling.mean[0] == pytest.approx(train_load.mean())
    assert task.scaling.std[0] == pytest.approx(train_load.std(ddof=0))
    saved = json.loads(json.dumps(task.scaling.to_json()))  # JSON, no pickle
    assert set(saved) == {"columns", "mean", "std", "mase_scale", "season"}


def test_no_training_window_holds_a_validation_or_test_timestamp(tmp_path):
    recipe = recipe_for(tmp_path)
    splits, _ = load(recipe)
    task = make_task(recipe)
    task.setup(splits.frames["train"])
    times = pd.to_datetime(series_frame()["date"])
    first_validation, first_test = times.iloc[240], times.iloc[320]
    spans = {}
    for name in ("train", "validation", "test"):
        windows = task.encode(splits.frames[name], train=name == "train")
        starts = windows.starts
        context_end = windows.times.iloc[starts + 24 - 1].to_numpy()
        spans[name] = (windows.times.iloc[starts].to_numpy(), context_end,
                       windows.times.iloc[starts + 24].to_numpy(), windows.times.iloc[starts + 32 - 1].to_numpy())
    begin, _, _, end = spans["train"]
    assert end.max() < first_validation.to_datetime64() and len(begin) == 240 - 32 + 1
    _, _, target_start, target_end = spans["validation"]
    assert target_start.min() == first_validation.to_datetime64() and target_end.max() < first_test.to_datetime64()
    assert len(target_start) == 80 - 8 + 1  # every validation target row scored, context read from train
    _, _, target_start, target_end = spans["test"]
    assert target_start.min() == first_test.to_datetime64() and target_end.max() == times.iloc[399].to_datetime64()


def test_a_split_by_dates_and_by_shares(tmp_path):
    recipe = recipe_for(tmp_path, split={"train": "2024-01-11", "validation": 0.2, "test": 0.2})
    splits, _ = load(recipe)
    assert len(splits.frames["train"]) == 240  # ten days of hours before 2024-01-11
    assert int((~splits.frames["validation"]["_context"]).sum()) == 80


# -- the gate: each bad input is one DanluError naming its rows ----------------------------------
def test_unparseable_dates_stop_with_their_lines(tmp_path):
    frame = series_frame()
    frame.loc[[10, 20], "date"] = ["not a date", "2024-13-45"]
    with pytest.raises(DataError, match=r"unparseable_time.*lines 12, 22"):
        load(recipe_for(tmp_path, frame))


def test_duplicated_timestamps_stop_with_their_lines(tmp_path):
    frame = series_frame()
    frame.loc[31, "date"] = frame.loc[30, "date"]
    with pytest.raises(DataError, match=r"duplicate_timestamps.*lines 32, 33"):
        load(recipe_for(tmp_path, frame, gaps="stop"))


def test_a_horizon_longer_than_the_test_split_stops(tmp_path):
    with pytest.raises(DataError, match=r"forecast.horizon \(96\) is longer than the test split \(80 rows\)"):
        load(recipe_for(tmp_path, horizon=96, split={"train": 240, "validation": 0, "test": 80}))


def test_a_target_that_is_not_numeric_stops_naming_it_and_its_rows(tmp_path):
    frame = series_frame()
    frame["load"] = ["high", "low"] * (HOURS // 2)
    with pytest.raises(DataError, match=r"target 'load' is not a column of numbers \(line 2: 'high'\), lines 2, 3"):
        load(recipe_for(tmp_path, frame, targets=["load", "temp"]))


def test_gaps_are_filled_dropped_or_stop(tmp_path):
    frame = series_frame().drop(index=[100, 101, 102]).reset_index(drop=True)
    with pytest.raises(DataError, match=r"missing_timestamps: 3 timestamps .* missing: 3 after line 101"):
        load(recipe_for(tmp_path, frame, gaps="stop"))
    filled, report = load(recipe_for(tmp_path, frame, gaps="fill"))
    train = filled.frames["train"]
    assert len(train) == 240 and (train["_row"] == 0).sum() == 3  # inserted rows carry line 0
    inserted = train.loc[train["_row"] == 0, "load"].to_numpy()
    before, after = train["load"].iloc[99], train["load"].iloc[103]
    np.testing.assert_allclose(inserted, before + (after - before) * np.array([1, 2, 3]) / 4)
    assert next(r for r in report.rules if r.name == "missing_timestamps").passed
    recipe = recipe_for(tmp_path, frame, gaps="drop", split={"train": 240, "validation": 80, "test": 77})
    dropped, _ = load(recipe)
    task = make_task(recipe)
    task.setup(dropped.frames["train"])
    windows = task.encode(dropped.frames["train"])
    assert len(windows) == (100 - 31) + (140 - 31)  # 100 rows, the gap, 140 rows: no window spans the gap


def test_values_that_are_no_numbers_are_filled_dropped_or_stop(tmp_path):
    frame = series_frame()
    frame["load"] = frame["load"].astype(object)
    frame.loc[50, "load"], frame.loc[60, "temp"] = "?", np.nan
    with pytest.raises(DataError, match=r"(?s)non_finite_values: 1 rows hold text.* at lines 52;.*"
                                        r"missing_values: 1 rows have an empty value at lines 62"):
        load(recipe_for(tmp_path, frame, gaps="stop"))
    filled, _ = load(recipe_for(tmp_path, frame, gaps="fill"))
    train = filled.frames["train"]
    assert train["load"].iloc[50] == pytest.approx((train["load"].iloc[49] + train["load"].iloc[51]) / 2)
    dropped, report = load(recipe_for(tmp_path, frame, gaps="drop", split={"train": 238, "validation": 80, "test": 80}))
    assert dropped.dropped == {"series": {"missing or non-finite values": [52, 62]}}
    assert report.dropped == dropped.dropped


def test_rows_out_of_order_are_sorted_or_stop(tmp_path):
    frame = series_frame()
    frame.iloc[[50, 51]] = frame.iloc[[51, 50]].to_numpy()
    with pytest.raises(DataError, match=r"time_order: 1 rows come earlier .* at lines 53"):
        load(recipe_for(tmp_path, frame, gaps="stop"))
    splits, report = load(recipe_for(tmp_path, frame, gaps="fill"))
    assert pd.Series(splits.frames["train"]["date"]).is_monotonic_increasing


def test_a_constant_series_fails_its_rule(tmp_path):
    frame = series_frame()
    frame["temp"] = 7.0
    with pytest.raises(DataError, match=r"constant_series: temp never changes"):
        load(recipe_for(tmp_path, frame))


def test_the_recipe_section_is_checked():
    base = {"name": "x", "task": "forecasting", "data": {"source": "builtin:iris"}}
    for forecast, match in (({"horizn": 3}, r"forecast.horizn: unknown key; did you mean 'forecast.horizon'"),
                            ({"horizon": 0}, r"forecast.horizon"),
                            ({"split": {"train": 0.8, "validation": 0.2, "test": 0.2}}, "add up to 1.2"),
                            ({"split": {"test": "next year"}}, "ISO date"),
                            ({"frequency": "every hour"}, "offset alias"),
                            ({"moving_average": 24}, "odd"),
                            ({"targets": ["date"]}, "date is named more than once")):
        with pytest.raises(RecipeError, match=match):
            recipe_from_dict({**base, "forecast": forecast})
    with pytest.raises(RecipeError, match="data.split: a forecasting run splits"):
        recipe_from_dict({**base, "data": {"source": "builtin:iris", "split": {"test": 0.1}}})
    with pytest.raises(RecipeError, match="forecasting builds dlinear, patchtst, lstm, not 'cnn'"):
        recipe_from_dict({**base, "model": {"arch": "cnn"}})


def test_the_frequency_and_season_are_inferred(tmp_path):
    monthly = pd.DataFrame({"Month": pd.date_range("1949-01", periods=60, freq="MS").strftime("%Y-%m"),
                            "Passengers": np.arange(60, dtype=float) + 100})
    monthly = monthly.drop(index=[30]).reset_index(drop=True)  # a gap: infer_freq alone gives up
    recipe = recipe_for(tmp_path, monthly, time="Month", context=12, horizon=6,
                        split={"train": 36, "validation": 0, "test": 23})
    splits, report = load(recipe)
    assert "frequency MS (inferred), season 12 steps" in report.notes
    assert (splits.frames["train"]["_row"] == 0).sum() == 1


# -- baselines and metrics ----------------------------------------------------------------------
def test_the_naive_baselines_forecast_what_they_say(tmp_path):
    frame = series_frame()
    frame["load"] = np.tile(np.arange(24, dtype=float), HOURS // 24 + 1)[:HOURS]  # one season, repeated
    recipe = recipe_for(tmp_path, frame)
    splits, _ = load(recipe)
    task = make_task(recipe)
    task.setup(splits.frames["train"])
    found = task.baseline(splits.frames, ["test"])["test"]
    assert set(found) == set(task.baseline_names()) == {"naive", "seasonal_naive"}
    per_series = task.metrics(*measure.baselines(task.encode(splits.frames["test"]))["seasonal_naive"])["per_series"]
    assert per_series["load"]["mse"] == pytest.approx(0.0, abs=1e-10)
    assert found["naive"]["mse"] > found["seasonal_naive"]["mse"]
    assert {"mse", "mae", "mse_original", "mae_original", "mase"} <= set(found["naive"])


# -- a finished run: predict, eval, serve, report -------------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    from danlu.pipeline import train

    folder = tmp_path_factory.mktemp("forecast-run")
    recipe = recipe_for(folder, series_frame())
    return train(recipe, folder / "run").root, folder


def test_predict_from_a_history_file(finished):
    from danlu.predict import predict_input

    run, folder = finished
    history = series_frame().iloc[300:340]
    (line,) = predict_input(run, write(folder, history, "history.csv"))
    assert line["time"][0] == "2024-01-15 04:00:00" and len(line["time"]) == 8  # the 8 hours after the last
    assert [f["target"] for f in line["forecast"]] == ["load", "temp"]
    truth = series_frame()["load"].iloc[340:348].to_numpy()
    assert np.abs(np.asarray(line["forecast"][0]["values"]) - truth).mean() < 3.0  # amplitude 10: it learnt
    with pytest.raises(DataError, match=r"the history has 10 rows; the model reads the last 24"):
        list(predict_input(run, write(folder, history.iloc[:10], "short.csv")))


def test_eval_on_a_full_series_file_and_the_report(finished):
    from danlu.pipeline.evaluate import evaluate_run

    run, folder = finished
    metrics = evaluate_run(run, write(folder, series_frame(seed=1), "other.csv"))
    assert metrics["n"] == HOURS - 32 + 1 and metrics["mse"] < 0.5
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["baselines"]["test"]["seasonal_naive"]["mase"] > 0
    report = (run / "report.md").read_text()
    assert "## Forecasts: test" in report and "plots/forecast_test.png" in report
    assert (run / "plots" / "forecast_test.png").stat().st_size > 1000


def test_serve_answers_a_history_with_its_forecast(finished):
    from fastapi.testclient import TestClient

    from danlu.serve.app import ServeSettings, create_app
    from danlu.serve.runner import load_runner

    run, _ = finished
    rows = series_frame().iloc[300:340].to_dict("records")
    with TestClient(create_app(load_runner(run), ServeSettings())) as client:
        one = client.post("/v1/predict", json={"inputs": {"history": rows}})
        two = client.post("/v1/predict", json={"inputs": [{"history": rows}, {"history": rows[:-1]}]})
        short = client.post("/v1/predict", json={"inputs": {"history": rows[:5]}})
    assert one.status_code == 200, one.text
    (forecast,) = one.json()["predictions"]
    assert forecast["time"][0] == "2024-01-15 04:00:00"
    first, second = two.json()["predictions"]
    assert first["time"] == forecast["time"] and second["time"][0] == "2024-01-15 03:00:00"
    for a, b in zip(first["forecast"], forecast["forecast"]):  # batched with another history: the same forecast
        np.testing.assert_allclose(a["values"], b["values"], rtol=1e-5)
    assert short.status_code == 422 and "history" in short.text


# -- the models ----------------------------------------------------------------------------------
def trained_task(folder, **extra):
    recipe = recipe_for(folder, **extra)
    splits, _ = load(recipe)
    task = make_task(recipe)
    task.setup(splits.frames["train"])
    return task, splits


def test_lstm_and_patchtst_train_and_reload(tmp_path):
    from danlu.tasks import load_task

    for arch in ("lstm", "patchtst"):
        recipe = recipe_for(tmp_path, context=32, model={"arch": arch})
        splits, _ = load(recipe)
        task = make_task(recipe)
        task.setup(splits.frames["train"])
        torch.manual_seed(0)
        model = task.build_model()
        windows = task.encode(splits.frames["train"], train=True)
        batch = task.collate([windows[i] for i in range(8)])
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        first = model(**batch)["loss"]
        for _ in range(5):
            optimizer.zero_grad()
            model(**batch)["loss"].backward()
            optimizer.step()
        assert float(model(**batch)["loss"].detach()) < float(first.detach())
        model.eval()
        task.save(model, tmp_path / arch)
        loaded_task, loaded = load_task(tmp_path / arch)
        history = splits.frames["test"].drop(columns=["_context"])
        assert loaded_task.predict(TorchForward(loaded), history) == task.predict(TorchForward(model), history)
    from transformers import PatchTSTForPrediction

    assert PatchTSTForPrediction.from_pretrained(tmp_path / "patchtst").config.prediction_length == 8


def test_patchtst_starts_from_a_pretrained_folder(tmp_path):
    from transformers import PatchTSTConfig, PatchTSTForPrediction

    torch.manual_seed(0)
    config = PatchTSTConfig(num_input_channels=1, context_length=32, prediction_length=4, patch_length=8,
                            patch_stride=8, d_model=16, num_attention_heads=2, num_hidden_layers=1, ffn_dim=32)
    PatchTSTForPrediction(config).save_pretrained(tmp_path / "tiny-patchtst")
    pretrained = PatchTSTForPrediction.from_pretrained(tmp_path / "tiny-patchtst")
    recipe = recipe_for(tmp_path, context=32, patch_length=8, patch_stride=8,
                        model={"from": str(tmp_path / "tiny-patchtst")})
    splits, _ = load(recipe)
    task = make_task(recipe)
    task.setup(splits.frames["train"])
    model = task.build_model()
    assert model.config.prediction_length == 8 and model.config.num_input_channels == 2  # the head re-made
    encoder = "model.model.encoder.layers.0.self_attn.q_proj.weight"
    got = dict(model.named_parameters())[encoder]
    torch.testing.assert_close(got, dict(pretrained.named_parameters())[encoder.removeprefix("model.")])
    batch = task.collate([task.encode(splits.frames["train"])[i] for i in range(4)])
    assert torch.isfinite(model(**batch)["loss"])
    recipe = recipe_for(tmp_path, context=48, patch_length=8, patch_stride=8,
                        model={"from": str(tmp_path / "tiny-patchtst")})
    task = make_task(recipe)
    task.setup(load(recipe)[0].frames["train"])
    with pytest.raises(DanluError, match="reads a context of 32 steps; set forecast.context: 32"):
        task.build_model()


def test_future_covariates_are_read_over_the_horizon(tmp_path):
    frame = series_frame()
    frame["holiday"] = ((np.arange(HOURS) // 24) % 7 == 6).astype(float)
    frame["load"] -= 8 * frame["holiday"]
    task, splits = trained_task(tmp_path, frame=frame, targets=["load"], covariates={"future": ["holiday"]})
    model = task.build_model().eval()
    history = frame.iloc[300:340].copy()
    with pytest.raises(DataError, match="give 8 rows after the history's last, from 2024-01-15 04:00:00"):
        task.predict(TorchForward(model), history)
    future = frame.iloc[340:348].copy()
    future["load"] = np.nan
    (forecast,) = task.predict(TorchForward(model), pd.concat([history, future]))
    assert forecast["time"][0] == "2024-01-15 04:00:00" and [f["target"] for f in forecast["forecast"]] == ["load"]


# -- the real data: the standard ETTh1 split ------------------------------------------------------
def test_etth1_is_split_as_the_papers_do(datasets_dir):
    from danlu.tasks.forecasting.data import load as load_series

    recipe = load_recipe(REPO / "recipes" / "etth1_96.yaml")
    splits, report = load_series(recipe)
    # validation and test: 2,880 rows each, led by the 512 rows of context before them
    assert report.passed and [len(splits.frames[s]) for s in ("train", "validation", "test")] == [8640, 3392, 3392]
    test = splits.frames["test"]
    assert str(test.loc[~test["_context"], "date"].iloc[0]) == "2017-10-24 00:00:00"  # row 11,520
    assert int(test["_row"].iloc[-1]) == 14401  # line 14,401 of the file: row 14,399 after the header
    for name in ("etth1_336.yaml", "airline_passengers.yaml"):
        assert load_recipe(REPO / "recipes" / name).task == "forecasting"
