//! Data sets in the layouts PRM users have them (issue 17): TRL stepwise supervision read directly
//! by eval, score/train and the active loop; PRM800K raw and Math-Shepherd raw through `convert`,
//! compared with an independent Python reference (tools/convert-reference/make_expected.py).

use crate::common;

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, BooleanBuilder, ListBuilder, RecordBatch, StringArray, StringBuilder,
};
use common::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn jsonl(name: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(data(name))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// (id, problem, steps, label) of a converted Parquet file.
fn converted(path: &Path) -> Vec<(String, String, Vec<String>, i32)> {
    let file = std::fs::File::open(path).unwrap();
    let mut out = Vec::new();
    for b in parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
    {
        let b = b.unwrap();
        let id = b.column_by_name("id").unwrap().as_string::<i32>();
        let problem = b.column_by_name("problem").unwrap().as_string::<i32>();
        let steps = b.column_by_name("steps").unwrap().as_list::<i32>();
        let label = b
            .column_by_name("label")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int32Type>();
        for i in 0..b.num_rows() {
            let st = steps.value(i);
            out.push((
                id.value(i).to_string(),
                problem.value(i).to_string(),
                st.as_string::<i32>()
                    .iter()
                    .map(|x| x.unwrap().to_string())
                    .collect(),
                label.value(i),
            ));
        }
    }
    out
}

#[test]
fn prm800k_raw_converts_as_the_reference_does_and_reports_rejects_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("prm800k.parquet");
    let mut files: Vec<_> = std::fs::read_dir(data("prm800k_raw"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut args = vec!["convert"];
    args.extend(files.iter().map(|p| s(p)));
    args.extend(["-o", s(&out)]);
    let o = actprm(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let expected: Vec<(String, String, Vec<String>, i32)> = jsonl("prm800k_raw_expected.jsonl")
        .iter()
        .map(|v| {
            (
                v["id"].as_str().unwrap().to_string(),
                v["problem"].as_str().unwrap().to_string(),
                v["steps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap().to_string())
                    .collect(),
                v["label"].as_i64().unwrap() as i32,
            )
        })
        .collect();
    assert_eq!(converted(&out), expected);
    // the record with nothing chosen or rated -1 is rejected, by file and line, and listed
    assert!(
        stderr(&o).contains("prm800k-phase1-train-example.json:")
            && stderr(&o).contains("nothing labelled to keep"),
        "{}",
        stderr(&o)
    );
    let rejects = std::fs::read_to_string(format!("{}.rejects.jsonl", out.display())).unwrap();
    assert_eq!(rejects.lines().count(), 1, "{rejects}");
}

#[test]
fn math_shepherd_raw_converts_and_a_damaged_record_is_rejected_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("shepherd.parquet");
    let o = actprm(&[
        "convert",
        s(&data("math_shepherd_style.jsonl")),
        "-o",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let records = jsonl("math_shepherd_style.jsonl");
    let rows = converted(&out);
    // the last record is the damaged one
    assert_eq!(rows.len(), records.len() - 1);
    let sample = read_parquet_rows_of("prm800k_test_sample.jsonl");
    for ((_, problem, steps, label), source) in rows.iter().zip(&records) {
        assert_eq!(*label as i64, source["expected_label"].as_i64().unwrap());
        // the steps and problem are the original trajectory's, tags and "Step k:" removed
        assert!(
            sample
                .iter()
                .any(|r| &r.problem == problem && &r.steps == steps),
            "{problem}"
        );
    }
    let damaged = format!(
        "math_shepherd_style.jsonl:{}: label text differs from input",
        records.len()
    );
    assert!(stderr(&o).contains(&damaged), "{}", stderr(&o));
}

fn read_parquet_rows_of(name: &str) -> Vec<actprm::source::jsonl::LabelledTrajectory> {
    records(name)
}

/// TRL's layout as Parquet: prompt, completions (list<string>), labels (list<bool>).
fn trl_parquet(path: &Path) -> Vec<i32> {
    let rows = jsonl("trl_stepwise.jsonl");
    let mut completions = ListBuilder::new(StringBuilder::new());
    let mut labels = ListBuilder::new(BooleanBuilder::new());
    for r in &rows {
        for c in r["completions"].as_array().unwrap() {
            completions.values().append_value(c.as_str().unwrap());
        }
        completions.append(true);
        for l in r["labels"].as_array().unwrap() {
            labels.values().append_value(l.as_bool().unwrap());
        }
        labels.append(true);
    }
    let prompts = StringArray::from_iter_values(rows.iter().map(|r| r["prompt"].as_str().unwrap()));
    let batch = RecordBatch::try_from_iter(vec![
        ("prompt", Arc::new(prompts) as ArrayRef),
        ("completions", Arc::new(completions.finish()) as ArrayRef),
        ("labels", Arc::new(labels.finish()) as ArrayRef),
    ])
    .unwrap();
    write_parquet(path, &batch);
    rows.iter()
        .map(|r| r["expected_label"].as_i64().unwrap() as i32)
        .collect()
}

#[test]
fn trl_stepwise_files_evaluate_like_the_same_rows_in_the_standard_layout() {
    let dir = tempfile::tempdir().unwrap();
    let trl = dir.path().join("trl.parquet");
    let expected = trl_parquet(&trl);
    assert!(expected.iter().any(|&l| l >= 0) && expected.contains(&-1));
    // the JSON Lines reader takes the same layout
    let from_jsonl: Vec<i32> = actprm::source::jsonl::read_labelled(&data("trl_stepwise.jsonl"))
        .unwrap()
        .iter()
        .map(|r| r.label.unwrap())
        .collect();
    assert_eq!(from_jsonl, expected);
    // the same rows in today's layout (id, problem, steps, label), through convert
    let standard = dir.path().join("standard.parquet");
    let o = actprm(&[
        "convert",
        s(&data("trl_stepwise.jsonl")),
        "-o",
        s(&standard),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        converted(&standard).iter().map(|r| r.3).collect::<Vec<_>>(),
        expected
    );
    let eval = |file: &Path| {
        let o = actprm(&["eval", s(file), "--tau", "0.5", "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        // the subset is named after the file: compare its numbers
        let stem = file.file_stem().unwrap().to_str().unwrap();
        (v["subsets"][stem].clone(), v["mean_f1"].clone())
    };
    let (trl_numbers, standard_numbers) = (eval(&trl), eval(&standard));
    assert_eq!(trl_numbers.0["n_error"], 2, "{trl_numbers:?}");
    assert_eq!(trl_numbers, standard_numbers);
}

#[test]
fn trl_stepwise_pools_train_and_run_the_active_loop() {
    let dir = tempfile::tempdir().unwrap();
    let trl = dir.path().join("trl.parquet");
    let expected = trl_parquet(&trl);
    // score --features carries the labels into the feature store train reads
    let features = dir.path().join("f.arrow");
    let o = actprm(&[
        "score",
        "-i",
        s(&trl),
        "-o",
        s(&dir.path().join("scored")),
        "--features",
        s(&features),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, rows) = actprm::formats::features::read_features(&features).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.label.unwrap()).collect::<Vec<_>>(),
        expected
    );
    let o = actprm(&[
        "train",
        "--features",
        s(&features),
        "-o",
        s(&dir.path().join("model")),
        "--epochs",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // the active loop's pool mode reads the labels column
    let out = dir.path().join("active");
    let o = actprm(&[
        "active",
        "-i",
        s(&trl),
        "-o",
        s(&out),
        "--cold-start",
        "2",
        "--keep-rate",
        "1",
        "--batch-rows",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut labelled: Vec<(u64, i32)> = Vec::new();
    for b in read_parquet_dir(&out.join("decisions"), "decisions-") {
        let row = b
            .column_by_name("source_row")
            .unwrap()
            .as_primitive::<arrow::datatypes::UInt64Type>();
        let label = b
            .column_by_name("label")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int32Type>();
        for i in 0..b.num_rows() {
            labelled.push((row.value(i), label.value(i)));
        }
    }
    labelled.sort();
    assert_eq!(
        labelled,
        expected
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u64, l))
            .collect::<Vec<_>>(),
        "every pool row labelled from its TRL labels"
    );
}

/// A Hub data set's `huggingface` schema metadata (its `datasets` features) is kept on the
/// scored output, so the file still loads with the features it was published with.
#[test]
fn huggingface_schema_metadata_is_kept_on_scored_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("hub.parquet");
    let batch = to_standard_batch();
    let features = r#"{"info": {"features": {"problem": {"dtype": "string", "_type": "Value"}}}}"#;
    let schema = batch
        .schema()
        .as_ref()
        .clone()
        .with_metadata([("huggingface".to_string(), features.to_string())].into());
    let batch = batch.with_schema(Arc::new(schema)).unwrap();
    write_parquet(&input, &batch);
    let written = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&input).unwrap(),
    )
    .unwrap();
    assert!(
        written.schema().metadata().contains_key("huggingface"),
        "the input carries the metadata"
    );
    let out = dir.path().join("scored");
    let o = actprm(&["score", "-i", s(&input), "-o", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let part = std::fs::File::open(out.join("part-00000.parquet")).unwrap();
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(part).unwrap();
    assert_eq!(
        reader
            .schema()
            .metadata()
            .get("huggingface")
            .map(String::as_str),
        Some(features)
    );
}

/// Two real records in the standard layout.
fn to_standard_batch() -> RecordBatch {
    let mut rows = records("prm800k_test_sample.jsonl");
    rows.truncate(2);
    actprm::source::jsonl::to_record_batch(&rows)
}

/// A data set folder as `huggingface-cli download --repo-type dataset` leaves it, read by split:
/// `data/{split}-0000i-of-0000n.parquet` and the Hub's Parquet export `{config}/{split}/0000.parquet`.
#[test]
fn hub_dataset_folders_are_read_by_split() {
    let dir = tempfile::tempdir().unwrap();
    let rows = records("prm800k_test_sample.jsonl");
    assert!(rows.len() >= 5);
    let ds = dir.path().join("ds");
    std::fs::create_dir_all(ds.join("data")).unwrap();
    let write = |path: &Path, part: &[actprm::source::jsonl::LabelledTrajectory]| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        write_parquet(path, &actprm::source::jsonl::to_record_batch(part));
    };
    write(&ds.join("data/train-00000-of-00002.parquet"), &rows[0..2]);
    write(&ds.join("data/train-00001-of-00002.parquet"), &rows[2..4]);
    write(&ds.join("data/test-00000-of-00001.parquet"), &rows[4..5]);
    let rows_scored = |args: &[&str], out: &Path| {
        let mut all = vec!["score", "-o", s(out)];
        all.extend_from_slice(args);
        let o = actprm(&all);
        assert!(o.status.success(), "{}", stderr(&o));
        summary(out)["rows_scored"].as_u64().unwrap()
    };
    // all splits at once would mix train and test: refused, naming them
    let o = actprm(&["score", "-i", s(&ds), "-o", s(&dir.path().join("mixed"))]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("train, test") || stderr(&o).contains("test, train"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("--split"), "{}", stderr(&o));
    assert_eq!(
        rows_scored(
            &["-i", s(&ds), "--split", "train"],
            &dir.path().join("train")
        ),
        4
    );
    assert_eq!(
        rows_scored(&["-i", s(&ds), "--split", "test"], &dir.path().join("test")),
        1
    );
    let o = actprm(&[
        "score",
        "-i",
        s(&ds),
        "--split",
        "validation",
        "-o",
        s(&dir.path().join("none")),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no such split"), "{}", stderr(&o));
    // the Hub's Parquet export
    let export = dir.path().join("export");
    write(&export.join("default/test/0000.parquet"), &rows[0..3]);
    write(&export.join("default/train/0000.parquet"), &rows[3..5]);
    assert_eq!(
        rows_scored(
            &["-i", s(&export), "--split", "test"],
            &dir.path().join("export-test")
        ),
        3
    );
    // filter and the active loop read splits the same way
    let o = actprm(&[
        "filter",
        "-i",
        s(&ds),
        "--split",
        "train",
        "-o",
        s(&dir.path().join("filtered")),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["rows_in"], 4, "{report}");
    let o = actprm(&[
        "active",
        "-i",
        s(&ds),
        "--split",
        "train",
        "-o",
        s(&dir.path().join("active")),
        "--cold-start",
        "2",
        "--keep-rate",
        "1",
        "--batch-rows",
        "2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["state"]["rows_done"], 4, "{report}");
}

/// `actprm eval` on a data set folder: one subset per split, with the same numbers as each
/// split's file evaluated alone (ProcessBench on the Hub has the splits gsm8k, math, ...).
#[test]
fn eval_reads_a_hub_folder_as_one_subset_per_split() {
    let dir = tempfile::tempdir().unwrap();
    let rows = records("prm800k_test_sample.jsonl");
    let ds = dir.path().join("processbench");
    std::fs::create_dir_all(ds.join("data")).unwrap();
    let gsm8k = ds.join("data/gsm8k-00000-of-00001.parquet");
    let math = ds.join("data/math-00000-of-00001.parquet");
    write_parquet(&gsm8k, &actprm::source::jsonl::to_record_batch(&rows[..5]));
    write_parquet(&math, &actprm::source::jsonl::to_record_batch(&rows[5..12]));
    let eval = |inputs: &[&Path]| -> serde_json::Value {
        let mut args = vec!["eval"];
        args.extend(inputs.iter().map(|p| s(p)));
        args.extend(["--tau", "0.5", "--json"]);
        let o = actprm(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let folder = eval(&[&ds]);
    let files = eval(&[&gsm8k, &math]);
    assert_eq!(folder["subsets"]["gsm8k"]["n"], 5, "{folder}");
    assert_eq!(folder["subsets"]["math"]["n"], 7, "{folder}");
    // a file alone is named by its stem
    assert_eq!(
        folder["subsets"]["gsm8k"],
        files["subsets"]["gsm8k-00000-of-00001"]
    );
    assert_eq!(
        folder["subsets"]["math"],
        files["subsets"]["math-00000-of-00001"]
    );
}

/// ActPRM's `hard_labels` layout evaluates like the same rows in TRL's layout and in today's.
#[test]
fn actprm_hard_labels_evaluate_like_the_same_rows_in_other_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let expected: Vec<i32> = jsonl("actprm_hard_labels.jsonl")
        .iter()
        .map(|r| r["expected_label"].as_i64().unwrap() as i32)
        .collect();
    let read: Vec<i32> = actprm::source::jsonl::read_labelled(&data("actprm_hard_labels.jsonl"))
        .unwrap()
        .iter()
        .map(|r| r.label.unwrap())
        .collect();
    assert_eq!(read, expected);
    let converted_file = dir.path().join("hard.parquet");
    let o = actprm(&[
        "convert",
        s(&data("actprm_hard_labels.jsonl")),
        "-o",
        s(&converted_file),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        converted(&converted_file)
            .iter()
            .map(|r| r.3)
            .collect::<Vec<_>>(),
        expected
    );
    let numbers = |file: &Path| {
        let o = actprm(&["eval", s(file), "--tau", "0.5", "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        // the one subset's counts and metrics (its name is the file's stem)
        let subsets = v["subsets"].as_object().unwrap().clone();
        assert_eq!(subsets.len(), 1);
        subsets.into_iter().next().unwrap().1
    };
    // the same counts first: two files read as no rows at all would agree on empty metrics
    let (hard, trl) = (
        numbers(&data("actprm_hard_labels.jsonl")),
        numbers(&data("trl_stepwise.jsonl")),
    );
    let errors = expected.iter().filter(|&&l| l >= 0).count();
    for v in [&hard, &trl] {
        assert_eq!(v["n"], expected.len(), "{v}");
        assert_eq!(v["n_error"], errors, "{v}");
        assert_eq!(v["n_correct"], expected.len() - errors, "{v}");
    }
    assert_eq!(hard, trl);
}

/// `convert` (and so a pipeline file's jsonl source) keeps every field of the records beside the
/// four columns it writes (issue 31, item 3): typed as Arrow infers them, or as JSON text when the
/// records disagree on a field's type.
#[test]
fn convert_keeps_every_other_field_of_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let source = data("prm800k_ratings_shapes.jsonl");
    let out = dir.path().join("kept.parquet");
    let o = actprm(&["convert", s(&source), "-o", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let records = jsonl("prm800k_ratings_shapes.jsonl");
    let batch = &read_parquet_dir(dir.path(), "kept")[0];
    assert_eq!(batch.num_rows(), records.len());
    let sources = batch.column_by_name("source").unwrap().as_string::<i32>();
    let solved = batch
        .column_by_name("final_answer_correct")
        .unwrap()
        .as_boolean();
    let ratings = batch.column_by_name("ratings").unwrap().as_list::<i32>();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(sources.value(i), r["source"].as_str().unwrap());
        let got = arrow::array::Array::is_valid(solved, i).then(|| solved.value(i));
        assert_eq!(got, r["final_answer_correct"].as_bool(), "record {i}");
        let got: Vec<i64> = ratings
            .value(i)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .values()
            .to_vec();
        let want: Vec<i64> = r["ratings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert_eq!(got, want);
    }
    // a field that is a number in one record and an object in another: kept as JSON text
    let mixed = dir.path().join("mixed.jsonl");
    std::fs::write(
        &mixed,
        "{\"problem\": \"p\", \"steps\": [\"a\"], \"label\": -1, \"meta\": 3}\n\
         {\"problem\": \"q\", \"steps\": [\"b\"], \"label\": 0, \"meta\": {\"k\": [1, 2]}}\n",
    )
    .unwrap();
    let out = dir.path().join("mixed.parquet");
    let o = actprm(&["convert", s(&mixed), "-o", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let batch = &read_parquet_dir(dir.path(), "mixed")[0];
    let meta = batch.column_by_name("meta").unwrap().as_string::<i32>();
    assert_eq!(meta.value(0), "3");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(meta.value(1)).unwrap(),
        serde_json::json!({"k": [1, 2]})
    );
}
