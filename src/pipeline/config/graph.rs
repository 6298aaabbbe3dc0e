//! Graph checks: every input resolves, no cycles, at least one source and one sink, names of
//! models and judges resolve, and a `train` stage has a `label` stage upstream.

use std::collections::{BTreeMap, HashMap};

use super::parse::Spans;
use super::problem::{hint, Problem};
use super::{LabelMode, PipelineFile, TransformStage};

/// What a stage name refers to.
#[derive(Debug, Clone, Copy)]
pub enum Node<'a> {
    Source,
    Transform(&'a TransformStage),
    Sink,
}

pub fn nodes(file: &PipelineFile) -> HashMap<&str, Node<'_>> {
    let mut out = HashMap::new();
    out.extend(file.sources.keys().map(|k| (k.as_str(), Node::Source)));
    out.extend(
        file.transforms
            .iter()
            .map(|(k, t)| (k.as_str(), Node::Transform(t))),
    );
    out.extend(file.sinks.keys().map(|k| (k.as_str(), Node::Sink)));
    out
}

pub fn check(file: &PipelineFile, spans: &Spans) -> Vec<Problem> {
    let mut problems = Vec::new();
    let nodes = nodes(file);
    let known: Vec<&str> = file
        .sources
        .keys()
        .chain(file.transforms.keys())
        .map(String::as_str)
        .collect();
    let declared = |kind: &str| spans.kind_of.values().any(|k| *k == kind);
    if !declared("source") && !spans.misspelled.contains("sources") {
        problems.push(Problem::at(
            &spans.section("sources"),
            "the pipeline has no source: declare one under `sources`",
        ));
    }
    if !declared("sink") && !spans.misspelled.contains("sinks") {
        problems.push(Problem::at(
            &spans.section("sinks"),
            "the pipeline has no sink: declare one under `sinks` (parquet, jsonl, arrow_ipc, hf_dataset or table)",
        ));
    }
    let stages = file
        .transforms
        .iter()
        .map(|(n, t)| (n, "transform", t.inputs(), t.kind()))
        .chain(
            file.sinks
                .iter()
                .map(|(n, s)| (n, "sink", s.inputs(), s.kind())),
        );
    for (name, what, inputs, kind) in stages {
        if inputs.is_empty() {
            problems.push(Problem::at(
                &spans.field(name, "inputs"),
                format!("{what} `{name}` ({kind}) has no inputs"),
            ));
        }
        for (i, input) in inputs.iter().enumerate() {
            if spans.broken.contains(input) {
                continue;
            }
            match nodes.get(input.as_str()) {
                None => problems.push(Problem::at(
                    &spans.input(name, i),
                    format!(
                        "input `{input}` of {what} `{name}` is not a source or transform{}",
                        hint(input, known.iter().copied())
                    ),
                )),
                Some(Node::Sink) => problems.push(Problem::at(
                    &spans.input(name, i),
                    format!("input `{input}` of {what} `{name}` is a sink; sinks have no output"),
                )),
                Some(_) => {}
            }
        }
    }
    problems.extend(cycles(file, spans));
    for (name, t) in &file.transforms {
        match t {
            TransformStage::Score(s) => {
                if let Some(m) = s.model.as_ref().filter(|m| {
                    !file.models.contains_key(*m) && !spans.broken.contains(&format!("model:{m}"))
                }) {
                    let names = file.models.keys().map(String::as_str);
                    problems.push(Problem::at(&spans.field(name, "model"), format!("model `{m}` of transform `{name}` is not declared under `models`{}", hint(m, names))));
                }
            }
            TransformStage::Label(l) => match (l.mode, &l.judge) {
                (LabelMode::Judge, None) => problems.push(Problem::at(&spans.field(name, "mode"), format!("transform `{name}` labels by judge but names none: add `judge: NAME` (declared under `judges`)"))),
                (LabelMode::Judge, Some(j))
                    if !file.judges.contains_key(j)
                        && !spans.broken.contains(&format!("judge:{j}")) =>
                {
                    let names = file.judges.keys().map(String::as_str);
                    problems.push(Problem::at(&spans.field(name, "judge"), format!("judge `{j}` of transform `{name}` is not declared under `judges`{}", hint(j, names))));
                }
                (LabelMode::Pool, Some(_)) => problems.push(Problem::at(&spans.field(name, "judge"), format!("transform `{name}` labels from the pool column; `judge` applies only to mode: judge"))),
                _ => {}
            },
            TransformStage::Train(_) if !has_label_upstream(file, name) => {
                problems.push(Problem::at(&spans.stage(name), format!("transform `{name}` (train) has no label stage upstream: training needs labels (add a `label` transform between select and train)")));
            }
            _ => {}
        }
    }
    problems
}

fn has_label_upstream(file: &PipelineFile, start: &str) -> bool {
    let mut stack = vec![start.to_string()];
    let mut seen = std::collections::HashSet::new();
    while let Some(n) = stack.pop() {
        if !seen.insert(n.clone()) {
            continue;
        }
        if let Some(t) = file.transforms.get(&n) {
            if n != start && matches!(t, TransformStage::Label(_)) {
                return true;
            }
            stack.extend(t.inputs().iter().cloned());
        }
    }
    false
}

/// Every cycle among transforms, once each, reported at the first stage of the cycle in file order.
fn cycles(file: &PipelineFile, spans: &Spans) -> Vec<Problem> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = file
        .transforms
        .keys()
        .map(|k| (k.as_str(), Mark::New))
        .collect();
    let mut problems = Vec::new();
    let order: Vec<&str> = spans
        .order
        .iter()
        .map(String::as_str)
        .filter(|n| file.transforms.contains_key(*n))
        .collect();
    fn visit<'a>(
        n: &'a str,
        file: &'a PipelineFile,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
        found: &mut Vec<Vec<&'a str>>,
    ) {
        marks.insert(n, Mark::Active);
        path.push(n);
        for input in file.transforms[n].inputs() {
            match marks.get(input.as_str()).copied() {
                Some(Mark::New) => visit(input, file, marks, path, found),
                Some(Mark::Active) => {
                    let from = path.iter().position(|p| *p == input).unwrap_or(0);
                    found.push(path[from..].to_vec());
                }
                _ => {}
            }
        }
        path.pop();
        marks.insert(n, Mark::Done);
    }
    let mut found = Vec::new();
    for n in order
        .iter()
        .copied()
        .chain(file.transforms.keys().map(String::as_str))
    {
        if marks.get(n) == Some(&Mark::New) {
            visit(n, file, &mut marks, &mut Vec::new(), &mut found);
        }
    }
    for cycle in found {
        // name the cycle in data-flow order, starting at its first stage in the file
        let mut flow: Vec<&str> = cycle.iter().rev().copied().collect();
        let first = order
            .iter()
            .position(|o| flow.contains(o))
            .map(|i| order[i])
            .unwrap_or(flow[0]);
        let k = flow.iter().position(|f| *f == first).unwrap_or(0);
        flow.rotate_left(k);
        let mut text = flow.join(" -> ");
        text.push_str(&format!(" -> {first}"));
        problems.push(Problem::at(
            &spans.stage(first),
            format!("transforms form a cycle: {text}"),
        ));
    }
    problems
}
