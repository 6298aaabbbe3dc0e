//! GROUP BY over 1M scored-like rows through `actprm::sql::session`: the closing number of
//! issue 7. Writes a deterministic Parquet file shaped like a score output (model_version,
//! source, selected, first_error, uncertainty, step_mean/step_std lists), then times queries.
//!
//! `cargo bench --bench sql_groupby [-- ROWS]` (release profile; default 1,000,000 rows).

use std::sync::Arc;
use std::time::Instant;

use actprm::sql::session::register_table;
use actprm::sql::{session, SqlConfig, TableSpec};
use arrow::array::{
    ArrayRef, BooleanArray, Float32Array, Float32Builder, Int32Array, ListBuilder, RecordBatch,
    StringArray,
};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const BATCH: usize = 65_536;

fn schema() -> Arc<Schema> {
    let list = || DataType::List(Arc::new(Field::new("item", DataType::Float32, false)));
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("step_mean", list(), false),
        Field::new("step_std", list(), false),
        Field::new("first_error", DataType::Int32, false),
        Field::new("selected", DataType::Boolean, false),
        Field::new("uncertainty", DataType::Float32, false),
        Field::new("model_version", DataType::Utf8, false),
    ]))
}

fn batch(rng: &mut ChaCha8Rng, first: usize, rows: usize) -> RecordBatch {
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let mut mean = ListBuilder::new(Float32Builder::new()).with_field(item.clone());
    let mut std = ListBuilder::new(Float32Builder::new()).with_field(item);
    let (mut first_error, mut selected, mut uncertainty) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rows {
        let steps = rng.random_range(1..=12);
        let m: Vec<f32> = (0..steps).map(|_| rng.random::<f32>().powf(0.3)).collect();
        let s: Vec<f32> = (0..steps).map(|_| rng.random::<f32>() * 0.05).collect();
        let d = actprm::select::decide(&m, &s, actprm::select::SelectionRule::default());
        first_error.push(actprm::select::first_error(&m, 0.5));
        selected.push(d.selected);
        uncertainty.push(d.uncertainty);
        mean.append_value(m.into_iter().map(Some));
        std.append_value(s.into_iter().map(Some));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            (first..first + rows).map(|i| format!("traj-{i:08}")),
        )),
        Arc::new(StringArray::from_iter_values(
            (first..first + rows).map(|i| format!("source-{}", i % 8)),
        )),
        Arc::new(mean.finish()),
        Arc::new(std.finish()),
        Arc::new(Int32Array::from(first_error)),
        Arc::new(BooleanArray::from(selected)),
        Arc::new(Float32Array::from(uncertainty)),
        Arc::new(StringArray::from_iter_values((first..first + rows).map(
            |i| format!("minilm-actprm-e8@{:012x}", i * 3 / (first + rows).max(1)),
        ))),
    ];
    RecordBatch::try_new(schema(), columns).expect("columns match the schema")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("scored.parquet");
    let started = Instant::now();
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .build();
    let mut writer = ArrowWriter::try_new(std::fs::File::create(&path)?, schema(), Some(props))?;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut done = 0;
    while done < rows {
        let n = BATCH.min(rows - done);
        writer.write(&batch(&mut rng, done, n))?;
        done += n;
    }
    writer.close()?;
    let size = std::fs::metadata(&path)?.len();
    println!(
        "wrote {rows} rows ({:.1} MB Parquet) in {:.1} s",
        size as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    let queries = [
        ("selected per model_version", "SELECT model_version, selected, count(*) AS n, avg(uncertainty) AS u FROM scored GROUP BY model_version, selected ORDER BY 1, 2"),
        ("first-error distribution", "SELECT first_error, count(*) AS n FROM scored GROUP BY first_error ORDER BY first_error"),
        ("per source with PRM list helpers", "SELECT source, count(*) FILTER (WHERE selected) AS selected, avg(prm_list_mean(step_mean)) AS mean, avg(prm_list_min(step_mean)) AS weakest FROM scored GROUP BY source ORDER BY source"),
        ("per source re-deciding with prm_is_uncertain", "SELECT source, count(*) FILTER (WHERE prm_is_uncertain(step_mean, step_std, 0.8, 0.02)) AS n FROM scored GROUP BY source ORDER BY source"),
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let ctx = session(&SqlConfig::default());
        register_table(
            &ctx,
            &TableSpec {
                name: "scored".into(),
                path: path.display().to_string(),
            },
        )
        .await?;
        for (name, sql) in queries {
            let mut times = Vec::new();
            let mut result_rows = 0;
            for _ in 0..4 {
                let t = Instant::now();
                let batches = ctx.sql(sql).await?.collect().await?;
                times.push(t.elapsed().as_secs_f64());
                result_rows = batches.iter().map(RecordBatch::num_rows).sum::<usize>();
            }
            let cold = times[0];
            let warm = times[1..].iter().cloned().fold(f64::INFINITY, f64::min);
            println!(
                "{name:<46} {result_rows:>3} groups  first {:>7.1} ms  best of 3 after {:>7.1} ms",
                cold * 1e3,
                warm * 1e3
            );
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}
