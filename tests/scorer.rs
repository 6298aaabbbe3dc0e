//! The scorer end to end, as a user runs it: `actprm score` on real records, column mapping,
//! windowing, and every bad-input case (rejected with a reason, never lost).

use crate::common;

use std::sync::Arc;

use actprm::select::{decide, first_error, SelectionRule};
use arrow::array::{
    Array, AsArray, BinaryArray, ListBuilder, RecordBatch, StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Float32Type, Int32Type, Schema};
use common::*;

fn list_f32(batch: &RecordBatch, name: &str, row: usize) -> Vec<f32> {
    let col = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"));
    col.as_list::<i32>()
        .value(row)
        .as_primitive::<Float32Type>()
        .values()
        .to_vec()
}

#[test]
fn scores_real_records_and_reconciles() {
    let dir = tempfile::tempdir().unwrap();
    let input = prm800k_parquet(dir.path());
    let out = dir.path().join("out");
    let o = actprm(&[
        "score",
        "-i",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--head-probs",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = summary(&out);
    assert_eq!(s["rows_in"], 24);
    assert_eq!(s["rows_scored"], 24);
    assert_eq!(s["rows_rejected"], 0);
    assert!(s["tokens"].as_u64().unwrap() > 2000);
    let version = s["model_version"].as_str().unwrap().to_string();
    assert!(version.starts_with("minilm-actprm-e8@"));

    let records = records("prm800k_test_sample.jsonl");
    let batches = read_parquet_dir(&out, "part-");
    let rule = SelectionRule::default();
    let tau = s["tau"].as_f64().unwrap() as f32;
    let mut row_index = 0;
    let mut flagged = 0u64;
    for b in &batches {
        // every input column is kept unchanged
        let ids = b.column_by_name("id").unwrap().as_string::<i32>();
        let problems = b.column_by_name("problem").unwrap().as_string::<i32>();
        for r in 0..b.num_rows() {
            let rec = &records[row_index];
            assert_eq!(ids.value(r), rec.id.as_deref().unwrap());
            assert_eq!(problems.value(r), rec.problem);
            let mean = list_f32(b, "step_mean", r);
            let std = list_f32(b, "step_std", r);
            assert_eq!(mean.len(), rec.steps.len(), "one score per step");
            assert!(std.iter().all(|s| *s >= 0.0));
            // mean/std agree with the per-head matrix
            let heads = b
                .column_by_name("step_head_probs")
                .unwrap()
                .as_list::<i32>()
                .value(r);
            let heads = heads.as_list::<i32>();
            for (i, m) in mean.iter().enumerate() {
                let p = heads.value(i);
                let p = p.as_primitive::<Float32Type>().values();
                assert_eq!(p.len(), 8);
                let mu = p.iter().sum::<f32>() / 8.0;
                assert!((mu - m).abs() < 1e-5);
            }
            let fe = b
                .column_by_name("first_error")
                .unwrap()
                .as_primitive::<Int32Type>()
                .value(r);
            // the default model's rule joins the arithmetic check
            let check = b
                .column_by_name("check_first_false")
                .unwrap()
                .as_primitive::<Int32Type>()
                .value(r);
            flagged += u64::from(check >= 0);
            assert_eq!(
                fe,
                actprm::score::check::earliest_error(
                    first_error(&mean, tau),
                    usize::try_from(check).ok()
                )
            );
            let d = decide(&mean, &std, rule);
            assert_eq!(
                b.column_by_name("selected").unwrap().as_boolean().value(r),
                d.selected
            );
            assert_eq!(
                b.column_by_name("select_reason")
                    .unwrap()
                    .as_string::<i32>()
                    .value(r),
                d.reason()
            );
            assert_eq!(
                b.column_by_name("model_version")
                    .unwrap()
                    .as_string::<i32>()
                    .value(r),
                version
            );
            row_index += 1;
        }
    }
    assert_eq!(row_index, 24);
    assert_eq!(s["check"], "min");
    assert_eq!(s["rows_check_flagged"], flagged);
}

#[test]
fn maps_other_column_names_and_keeps_extra_columns() {
    let dir = tempfile::tempdir().unwrap();
    let base = actprm::source::jsonl::to_record_batch(&records("mr_gsm8k_sample.jsonl"));
    let rename = |names: [&str; 4]| {
        let fields: Vec<Field> = base
            .schema()
            .fields()
            .iter()
            .zip(names)
            .map(|(f, n)| f.as_ref().clone().with_name(n))
            .collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), base.columns().to_vec()).unwrap()
    };
    // Hugging Face style names are found without flags
    write_parquet(
        &dir.path().join("hf.parquet"),
        &rename(["uuid", "question", "completions", "label"]),
    );
    let out = dir.path().join("out_hf");
    let o = actprm(&[
        "score",
        "-i",
        dir.path().join("hf.parquet").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let b = &read_parquet_dir(&out, "part-")[0];
    assert!(b.column_by_name("uuid").is_some() && b.column_by_name("question").is_some());
    assert_eq!(
        b.column_by_name("label").unwrap().data_type(),
        &DataType::Int32
    );
    // arbitrary names need the flags
    write_parquet(
        &dir.path().join("custom.parquet"),
        &rename(["key", "q", "s", "label"]),
    );
    let out2 = dir.path().join("out_custom");
    let input = dir.path().join("custom.parquet");
    let o = actprm(&[
        "score",
        "-i",
        input.to_str().unwrap(),
        "-o",
        out2.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(
            "custom.parquet: column \"problem|question|prompt|input|instruction\" not found"
        ),
        "{}",
        stderr(&o)
    );
    let o = actprm(&[
        "score",
        "-i",
        input.to_str().unwrap(),
        "-o",
        out2.to_str().unwrap(),
        "--problem-column",
        "q",
        "--steps-column",
        "s",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(summary(&out2)["rows_scored"], 6);
    // the same trajectories get the same scores whatever the column names
    let a = &read_parquet_dir(&out, "part-")[0];
    let c = &read_parquet_dir(&out2, "part-")[0];
    assert_eq!(list_f32(a, "step_mean", 3), list_f32(c, "step_mean", 3));
}

#[test]
fn long_trajectories_are_scored_in_windows() {
    let dir = tempfile::tempdir().unwrap();
    // the default model with a 96-token context: most real records need windows
    let model = dir.path().join("small_ctx");
    let base = actprm::model::LoadedModel::embedded().unwrap();
    let mut m = base.clone();
    m.manifest.max_length = 96;
    m.manifest.max_problem_tokens = 48;
    m.write_dir(
        &model,
        &base.heads_bytes,
        base.anchors_bytes.as_deref(),
        &[],
    )
    .unwrap();
    let input = prm800k_parquet(dir.path());
    let out = dir.path().join("out");
    let o = actprm(&[
        "score",
        "-i",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = summary(&out);
    assert!(s["windowed_rows"].as_u64().unwrap() >= 12, "{s}");
    let recs = records("prm800k_test_sample.jsonl");
    let mut row = 0;
    for b in read_parquet_dir(&out, "part-") {
        let windowed = b.column_by_name("windowed").unwrap().as_boolean().clone();
        let n_windows = b
            .column_by_name("n_windows")
            .unwrap()
            .as_primitive::<Int32Type>()
            .clone();
        for r in 0..b.num_rows() {
            assert_eq!(
                list_f32(&b, "step_mean", r).len(),
                recs[row].steps.len(),
                "every step scored"
            );
            assert_eq!(windowed.value(r), n_windows.value(r) > 1);
            row += 1;
        }
    }
}

#[test]
fn separator_strings_inside_the_problem_are_not_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut recs = records("prm800k_test_sample.jsonl");
    recs.truncate(3);
    for r in &mut recs {
        r.problem = format!("[SEP] {} [SEP] [SEP]", r.problem);
        r.steps[0] = format!("{} [SEP]", r.steps[0]);
    }
    let input = dir.path().join("sep.parquet");
    write_parquet(&input, &actprm::source::jsonl::to_record_batch(&recs));
    let out = dir.path().join("out");
    let o = actprm(&[
        "score",
        "-i",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let b = &read_parquet_dir(&out, "part-")[0];
    for (r, rec) in recs.iter().enumerate() {
        assert_eq!(list_f32(b, "step_mean", r).len(), rec.steps.len());
    }
}

/// A Parquet file with every kind of bad row next to good ones; `problem` is a binary column so
/// it can hold invalid UTF-8 exactly as a broken writer would produce it.
fn bad_rows_file(path: &std::path::Path) {
    let good = records("bigbench_mistake_sample.jsonl");
    let problems: Vec<Option<&[u8]>> = vec![
        Some(good[0].problem.as_bytes()),
        None,                             // null problem
        Some(good[1].problem.as_bytes()), // null steps
        Some(good[2].problem.as_bytes()), // empty step list
        Some(good[3].problem.as_bytes()), // empty step string
        Some(b"(1 + \xff\xfe 2) ="),      // invalid UTF-8
        Some(good[4].problem.as_bytes()),
        Some(good[5].problem.as_bytes()),
    ];
    let mut steps = ListBuilder::new(StringBuilder::new());
    let push = |b: &mut ListBuilder<StringBuilder>, s: &[String]| {
        for x in s {
            b.values().append_value(x);
        }
        b.append(true);
    };
    push(&mut steps, &good[0].steps);
    push(&mut steps, &good[1].steps);
    steps.append(false);
    steps.append(true);
    push(&mut steps, &[good[3].steps[0].clone(), "  ".into()]);
    push(&mut steps, &good[2].steps);
    push(&mut steps, &good[4].steps);
    push(&mut steps, &good[5].steps);
    let ids = StringArray::from_iter_values((0..8).map(|i| format!("row{i}")));
    let steps = steps.finish();
    let schema = Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("problem", DataType::Binary, true),
        Field::new("steps", steps.data_type().clone(), true),
    ]);
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(ids),
            Arc::new(BinaryArray::from(problems)),
            Arc::new(steps),
        ],
    )
    .unwrap();
    write_parquet(path, &batch);
}

#[test]
fn bad_rows_are_rejected_with_reasons_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.parquet");
    bad_rows_file(&input);
    // a corrupt file next to it: reported, the run continues
    std::fs::write(
        dir.path().join("corrupt.parquet"),
        b"PAR1 this is not parquet at all",
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = actprm(&[
        "score",
        "-i",
        dir.path().to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = summary(&out);
    assert_eq!(s["rows_in"], 8);
    assert_eq!(s["rows_scored"], 3);
    assert_eq!(s["rows_rejected"], 5);
    assert_eq!(s["files_unreadable"], 1);
    let rejects = read_parquet_dir(&out.join("rejects"), "rejects-");
    let b = &rejects[0];
    assert_eq!(b.num_rows(), 5);
    let ids: Vec<&str> = b
        .column_by_name("id")
        .unwrap()
        .as_string::<i32>()
        .iter()
        .map(Option::unwrap)
        .collect();
    let reasons: Vec<&str> = b
        .column_by_name("reject_reason")
        .unwrap()
        .as_string::<i32>()
        .iter()
        .map(Option::unwrap)
        .collect();
    let rows: Vec<u64> = b
        .column_by_name("reject_row")
        .unwrap()
        .as_primitive::<arrow::datatypes::UInt64Type>()
        .values()
        .to_vec();
    assert_eq!(ids, ["row1", "row2", "row3", "row4", "row5"]);
    assert_eq!(rows, [1, 2, 3, 4, 5]);
    assert_eq!(
        reasons,
        [
            "problem is null",
            "steps is null",
            "steps is an empty list",
            "step 1 is an empty string",
            "invalid UTF-8 at byte 5"
        ]
    );
    // the original bytes survive in the rejects output
    let problems = b.column_by_name("problem").unwrap().as_binary::<i32>();
    assert_eq!(problems.value(4), b"(1 + \xff\xfe 2) =");
    let unreadable = std::fs::read_to_string(out.join("rejects/unreadable.jsonl")).unwrap();
    assert!(
        unreadable.contains("corrupt.parquet")
            && unreadable.contains("not a readable Parquet file"),
        "{unreadable}"
    );
}

#[test]
fn column_errors_name_file_column_and_type_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Schema::new(vec![
        Field::new("problem", DataType::Utf8, false),
        Field::new("steps", DataType::Utf8, false),
    ]);
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(StringArray::from(vec!["p"])),
            Arc::new(StringArray::from(vec!["s"])),
        ],
    )
    .unwrap();
    let input = dir.path().join("flat.parquet");
    write_parquet(&input, &batch);
    let out = dir.path().join("out");
    let o = actprm(&[
        "score",
        "-i",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains(
            "flat.parquet: column \"steps\" has type Utf8, expected a list of strings (List<Utf8>)"
        ),
        "{err}"
    );
    assert!(
        !out.join("summary.json").exists(),
        "no work before validation passes"
    );
}

#[test]
fn missing_runtime_or_model_files_say_how_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let input = prm800k_parquet(dir.path());
    let out = dir.path().join("out");
    let run = |var: &str, value: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_actprm"))
            .args([
                "score",
                "-i",
                input.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ])
            .env(var, value)
            .output()
            .unwrap()
    };
    let o = run("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("ONNX Runtime library not found at /nonexistent/libonnxruntime.so")
            && err.contains("./setup.sh"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let o = run("ACTPRM_DEPS", "/nonexistent-deps");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("/nonexistent-deps") && err.contains("setup.sh"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// `--device cuda` on a machine without a GPU says what is missing, never a library name that
/// leaves the user guessing: the CPU build of ONNX Runtime (CI, `./setup.sh`), and, when
/// `ACTPRM_GPU=1 ./setup.sh` has put the CUDA build in `<deps>/ort-gpu`, the NVIDIA driver (every
/// other library comes from the pinned wheels, preloaded by absolute path).
#[test]
fn cuda_on_a_machine_without_one_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let input = prm800k_parquet(dir.path());
    let run = |deps: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_actprm"))
            .args([
                "score",
                "-i",
                input.to_str().unwrap(),
                "--device",
                "cuda",
                "--quiet",
                "-o",
            ])
            .arg(dir.path().join("out"))
            .env("ACTPRM_DEPS", deps)
            .env_remove("ORT_DYLIB_PATH")
            .output()
            .unwrap()
    };
    let deps = actprm::model::deps_dir();
    // the CPU build alone: a deps folder without ort-gpu
    let cpu_only = dir.path().join("deps");
    std::fs::create_dir(&cpu_only).unwrap();
    for part in ["ort", "models"] {
        std::os::unix::fs::symlink(deps.join(part), cpu_only.join(part)).unwrap();
    }
    let o = run(&cpu_only);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("is the CPU build of ONNX Runtime, without a CUDA provider")
            && err.contains("ACTPRM_GPU=1 ./setup.sh"),
        "{err}"
    );
    let gpu_build = deps.join("ort-gpu");
    if !gpu_build.exists() {
        eprintln!(
            "{} is not installed (ACTPRM_GPU=1 ./setup.sh): the CUDA build's half is not run",
            gpu_build.display()
        );
        return;
    }
    let o = run(&deps);
    let err = stderr(&o);
    if o.status.success() {
        return; // a machine with a GPU: the provider registered
    }
    assert!(
        err.contains("no CUDA driver on this machine: libcuda.so.1"),
        "with the CUDA build installed, only the driver may be missing: {err}"
    );
}

#[test]
fn heads_graph_under_onnx_runtime_matches_the_reference_forward() {
    let weights = actprm::model::HeadsWeights::init(4, 384, 11);
    let bytes = weights.to_onnx(&[]);
    let mut runner =
        actprm::model::HeadsRunner::open(&bytes, "t".into(), &Default::default()).unwrap();
    let mut rng = actprm::rng::NormalRng::new(3);
    let features: Vec<f32> = (0..5 * 384).map(|_| rng.next_normal() as f32).collect();
    let probs = runner.probabilities(&features).unwrap();
    for (i, x) in features.chunks(384).enumerate() {
        let expect = weights.forward_one(x);
        for (e, p) in expect.iter().enumerate() {
            assert!(
                (probs[i * 4 + e] - p).abs() < 1e-5,
                "row {i} head {e}: {} vs {p}",
                probs[i * 4 + e]
            );
        }
    }
}

/// `score --check min`: `check_first_false` is the first step the Python prototype of the check
/// flags (tests/data/arith_check_reference.jsonl), and `first_error` is the earlier of it and
/// the heads' own first error (the same rows scored with `--check off`).
#[test]
fn score_joins_the_arithmetic_check_to_the_first_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bbm.parquet");
    let records = records("bigbench_mistake_sample.jsonl");
    write_parquet(&input, &actprm::source::jsonl::to_record_batch(&records));
    // each run's (first_error, check_first_false) columns
    let scored = |check: &str| -> (Vec<i32>, Vec<i32>) {
        let out = dir.path().join(check);
        let o = actprm(&[
            "score",
            "-i",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--check",
            check,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let parts = read_parquet_dir(&out, "part-");
        let column = |name: &str| -> Vec<i32> {
            parts
                .iter()
                .flat_map(|b| {
                    b.column_by_name(name)
                        .unwrap()
                        .as_primitive::<Int32Type>()
                        .values()
                        .to_vec()
                })
                .collect()
        };
        (column("first_error"), column("check_first_false"))
    };
    let reference: Vec<i32> = std::fs::read_to_string(data("arith_check_reference.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["file"] == "bigbench_mistake_sample.jsonl")
        .map(|r| {
            r["flags"]
                .as_array()
                .unwrap()
                .first()
                .map_or(-1, |v| v.as_i64().unwrap() as i32)
        })
        .collect();
    assert_eq!(reference.len(), records.len());
    assert!(
        reference.iter().any(|&f| f >= 0),
        "the sample has false equalities"
    );
    let (joined, checked) = scored("min");
    let (heads, unchecked) = scored("off");
    assert_eq!(checked, reference);
    assert_eq!(unchecked, vec![-1; records.len()]);
    for ((h, c), j) in heads.iter().zip(&reference).zip(&joined) {
        let expected = if *c >= 0 && (*h < 0 || c < h) { *c } else { *h };
        assert_eq!(*j, expected, "heads {h}, check {c}");
    }
}

#[test]
fn one_response_string_per_row_scores_as_its_list_of_steps() {
    let dir = tempfile::tempdir().unwrap();
    // real trajectories whose steps hold no blank line, as a list and as one response string
    let rows: Vec<_> = records("prm800k_test_sample.jsonl")
        .into_iter()
        .filter(|r| r.steps.iter().all(|s| !s.contains("\n\n")))
        .take(8)
        .collect();
    assert_eq!(rows.len(), 8);
    let list = actprm::source::jsonl::to_record_batch(&rows);
    write_parquet(&dir.path().join("list.parquet"), &list);
    // a trailing separator, as generated responses often have, makes no empty step
    let responses =
        StringArray::from_iter_values(rows.iter().map(|r| format!("{}\n\n", r.steps.join("\n\n"))));
    let problems = StringArray::from_iter_values(rows.iter().map(|r| r.problem.clone()));
    let strings = RecordBatch::try_from_iter(vec![
        ("question", Arc::new(problems) as arrow::array::ArrayRef),
        ("response", Arc::new(responses) as arrow::array::ArrayRef),
    ])
    .unwrap();
    write_parquet(&dir.path().join("strings.parquet"), &strings);
    let run = |input: &str, out: &str, extra: &[&str]| {
        let mut args = vec!["score", "-i", input, "-o", out];
        args.extend(extra);
        actprm(&args)
    };
    let p = |name: &str| dir.path().join(name).display().to_string();
    let o = run(&p("list.parquet"), &p("out_list"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    // without a separator a string column is refused, naming the flag
    let o = run(
        &p("strings.parquet"),
        &p("out_strings"),
        &["--steps-column", "response"],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--step-separator"), "{}", stderr(&o));
    // `\n\n` typed in a shell means two newlines
    let o = run(
        &p("strings.parquet"),
        &p("out_strings"),
        &["--steps-column", "response", "--step-separator", "\\n\\n"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let a = &read_parquet_dir(&dir.path().join("out_list"), "part-")[0];
    let b = &read_parquet_dir(&dir.path().join("out_strings"), "part-")[0];
    assert_eq!(a.num_rows(), 8);
    assert_eq!(b.num_rows(), 8);
    for (row, record) in rows.iter().enumerate() {
        let (x, y) = (list_f32(a, "step_mean", row), list_f32(b, "step_mean", row));
        assert_eq!(x.len(), record.steps.len());
        assert_eq!(x.len(), y.len(), "row {row}: steps split differently");
        for (x, y) in x.iter().zip(&y) {
            assert!((x - y).abs() < 1e-6, "row {row}: {x} vs {y}");
        }
    }
}

#[test]
fn off_a_terminal_progress_is_a_line_every_period_and_quiet_is_silent() {
    let dir = tempfile::tempdir().unwrap();
    let input = prm800k_parquet(dir.path());
    let run = |out: &str, quiet: bool| {
        let out = dir.path().join(out);
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_actprm"));
        cmd.args([
            "score",
            "-i",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .args(["--batch-rows", "4"])
        .env("ACTPRM_PROGRESS_EVERY_MS", "50");
        if quiet {
            cmd.arg("--quiet");
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        stderr(&o)
    };
    // stderr is a pipe here, as in a notebook, Slurm or Ray log
    let lines = run("out", false);
    let progress: Vec<&str> = lines
        .lines()
        .filter(|l| l.starts_with("actprm: ") && l.contains(" rows ("))
        .collect();
    assert!(!progress.is_empty(), "no progress line: {lines}");
    let total = summary(&dir.path().join("out"))["rows_in"]
        .as_u64()
        .unwrap();
    assert!(
        progress
            .iter()
            .all(|l| l.contains(&format!("/{total} rows (")) && l.contains("rows/s, ETA")),
        "{progress:?}"
    );
    let quiet = run("quiet", true);
    assert!(!quiet.contains(" rows ("), "{quiet}");
}

#[test]
fn a_run_that_can_read_no_input_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // a .json file that holds one record, not an array of them
    let array = dir.path().join("records.json");
    std::fs::write(&array, b"{\"problem\": \"1+1?\", \"steps\": [\"2\"]}").unwrap();
    let garbage = dir.path().join("garbage.parquet");
    std::fs::write(&garbage, b"these bytes are no Parquet file at all").unwrap();
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, b"\n\n").unwrap();
    for (input, says) in [
        (&array, "is not a JSON array of records"),
        (&empty, "none of the 1 input file(s) could be read"),
        (&garbage, "none of the 1 input file(s) could be read"),
    ] {
        for command in ["score", "filter"] {
            let out = dir.path().join(format!("out-{command}"));
            let o = actprm(&[
                command,
                "-i",
                input.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ]);
            assert!(!o.status.success(), "{command} {input:?} exited 0");
            let err = stderr(&o);
            assert!(
                err.contains(input.file_name().unwrap().to_str().unwrap()) && err.contains(says),
                "{command}: {err}"
            );
        }
    }
    // an unreadable file beside a readable one is quarantined, as before
    let good = prm800k_parquet(dir.path());
    let out = dir.path().join("mixed");
    let o = actprm(&[
        "score",
        "-i",
        good.to_str().unwrap(),
        garbage.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(summary(&out)["files_unreadable"], 1);
}

/// JSON Lines are read as they are (issue 31, item 3): every field kept, the same scores as the
/// same records in Parquet, a line that is no JSON object reported with its line number.
#[test]
fn json_lines_are_scored_as_they_are_with_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let source = data("prm800k_ratings_shapes.jsonl");
    let text = std::fs::read_to_string(&source).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    // a broken line (line 3) and a blank one between the records
    lines.insert(2, "{\"problem\": \"cut off");
    lines.insert(4, "");
    let jsonl = dir.path().join("records.jsonl");
    std::fs::write(&jsonl, lines.join("\n") + "\n").unwrap();
    let out = dir.path().join("from-jsonl");
    let o = actprm(&[
        "score",
        "-q",
        "-i",
        jsonl.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = summary(&out);
    assert_eq!(s["rows_in"], 5, "{s}");
    assert_eq!(s["rows_scored"], 4, "{s}");
    let unreadable = std::fs::read_to_string(out.join("rejects/unreadable.jsonl")).unwrap();
    assert!(unreadable.contains("line 3: not JSON"), "{unreadable}");
    let batches = read_parquet_dir(&out, "part-");
    let schema = batches[0].schema();
    for field in [
        "id",
        "source",
        "ratings",
        "final_answer_correct",
        "label",
        "step_mean",
    ] {
        assert!(schema.index_of(field).is_ok(), "no {field} in {schema:?}");
    }
    // the same records as Parquet (convert keeps id, problem, steps, label): the same scores
    let parquet = dir.path().join("records.parquet");
    let o = actprm(&[
        "convert",
        source.to_str().unwrap(),
        "-o",
        parquet.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out2 = dir.path().join("from-parquet");
    let o = actprm(&[
        "score",
        "-q",
        "-i",
        parquet.to_str().unwrap(),
        "-o",
        out2.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // (equal up to padding's summation order: the broken line splits the JSON Lines batch)
    let (a, b) = (step_means_in(&out), step_means_in(&out2));
    assert_eq!(a.len(), b.len());
    for ((id_a, m_a), (id_b, m_b)) in a.iter().zip(&b) {
        assert_eq!(id_a, id_b);
        assert_eq!(m_a.len(), m_b.len());
        for (x, y) in m_a.iter().zip(m_b) {
            assert!((x - y).abs() < 1e-5, "{id_a}: {m_a:?} vs {m_b:?}");
        }
    }
    // a folder of JSON Lines files is read as they are, by filter too
    let folder = dir.path().join("corpus");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(data("prm800k_test_sample.jsonl"), folder.join("a.jsonl")).unwrap();
    let kept = dir.path().join("kept");
    let o = actprm(&[
        "filter",
        "-q",
        "-i",
        folder.to_str().unwrap(),
        "-o",
        kept.to_str().unwrap(),
        "--keep-rate",
        "0.5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = summary(&kept);
    assert_eq!(s["rows_in"], 24, "{s}");
}

/// JSON arrays of records (`.json`, as ProcessBench ships) are read as they are (issue 31, item
/// 3): the same rows and scores as the same records as JSON Lines, an element that is no object
/// quarantined with its element number, a truncated array refused with a non-zero exit naming it.
#[test]
fn json_arrays_are_scored_like_the_same_records_as_json_lines() {
    use std::path::Path;
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(data("pb_subset.json")).unwrap()).unwrap();
    let jsonl = dir.path().join("pb.jsonl");
    let lines: Vec<String> = records.iter().map(|r| r.to_string()).collect();
    std::fs::write(&jsonl, lines.join("\n") + "\n").unwrap();
    // the array pretty-printed (records over many lines, brackets and commas inside strings of
    // the steps' LaTeX are the scanner's business), with two elements that are no records
    let mut elements = records.clone();
    elements.insert(2, serde_json::json!(5));
    elements.insert(
        4,
        serde_json::json!("a string, with [brackets] and \"quotes\""),
    );
    let array = dir.path().join("pb.json");
    std::fs::write(&array, serde_json::to_string_pretty(&elements).unwrap()).unwrap();
    let score = |input: &Path, out: &Path| {
        let o = actprm(&["score", "-q", "-i", &path(input), "-o", &path(out)]);
        assert!(o.status.success(), "{}", stderr(&o));
        step_means_in(out)
    };
    let (from_lines, from_array) = (dir.path().join("lines"), dir.path().join("array"));
    let (a, b) = (score(&jsonl, &from_lines), score(&array, &from_array));
    assert_eq!(a.len(), records.len());
    assert_eq!(
        a.iter().map(|r| &r.0).collect::<Vec<_>>(),
        b.iter().map(|r| &r.0).collect::<Vec<_>>()
    );
    for ((id, x), (_, y)) in a.iter().zip(&b) {
        for (p, q) in x.iter().zip(y) {
            assert!((p - q).abs() < 1e-5, "{id}: {x:?} vs {y:?}");
        }
    }
    let unreadable = std::fs::read_to_string(from_array.join("rejects/unreadable.jsonl")).unwrap();
    assert!(
        unreadable.contains("element 3: a JSON number"),
        "{unreadable}"
    );
    assert!(
        unreadable.contains("element 5: a JSON string"),
        "{unreadable}"
    );
    assert_eq!(summary(&from_array)["rows_in"], records.len() as u64 + 2);

    // a truncated array: refused, naming the file
    let text = std::fs::read_to_string(&array).unwrap();
    let cut = dir.path().join("cut.json");
    std::fs::write(&cut, &text[..text.len() / 2]).unwrap();
    let o = actprm(&[
        "score",
        "-q",
        "-i",
        &path(&cut),
        "-o",
        &path(&dir.path().join("cut")),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cut.json: not a readable JSON file"),
        "{}",
        stderr(&o)
    );
}
