//! The learning curve as a self-contained SVG (no plotting dependency): mean F1 over seeds
//! against labels spent, one line per strategy, with a band of one standard deviation.

use super::{ExperimentReport, View};

const COLORS: [&str; 6] = [
    "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

pub fn learning_curve_svg(report: &ExperimentReport, title: &str) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 440.0, 70.0, 190.0, 40.0, 50.0);
    let max_labels = report
        .curves
        .iter()
        .filter_map(|c| c.points.last().map(|p| p.labels))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let max_f1 = report
        .curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.mean_f1))
        .fold(0.05, f64::max)
        * 1.1;
    let x = |labels: f64| left + (w - left - right) * labels / max_labels;
    let y = |f1: f64| top + (h - top - bottom) * (1.0 - f1 / max_f1);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{left}\" y=\"22\" font-size=\"14\">{title}</text>\n"
    );
    svg += &format!(
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n",
        h - bottom,
        w - right,
        h - bottom
    );
    svg += &format!(
        "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"black\"/>\n",
        h - bottom
    );
    for i in 0..=5 {
        let f = max_f1 * i as f64 / 5.0;
        svg += &f1_tick(left, y(f), f);
        let l = max_labels * i as f64 / 5.0;
        svg += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{l:.0}</text>\n",
            x(l),
            h - bottom + 18.0
        );
    }
    svg += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">labels spent</text>\n",
        (left + w - right) / 2.0,
        h - 10.0
    );
    svg += &format!("<text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">dev F1 (mean over seeds)</text>\n", h / 2.0, h / 2.0);
    for (k, strategy) in report.strategies().iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let mut budgets: Vec<usize> = report
            .curves
            .iter()
            .filter(|c| &c.strategy == strategy)
            .flat_map(|c| c.points.iter().map(|p| p.labels))
            .collect();
        budgets.sort();
        budgets.dedup();
        let pts: Vec<(f64, f64, f64)> = budgets
            .iter()
            .filter_map(|&b| report.at_budget(strategy, b).map(|(m, s)| (b as f64, m, s)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let upper: Vec<String> = pts
            .iter()
            .map(|(b, m, s)| format!("{:.1},{:.1}", x(*b), y(m + s)))
            .collect();
        let lower: Vec<String> = pts
            .iter()
            .rev()
            .map(|(b, m, s)| format!("{:.1},{:.1}", x(*b), y((m - s).max(0.0))))
            .collect();
        svg += &format!(
            "<polygon points=\"{} {}\" fill=\"{color}\" opacity=\"0.15\"/>\n",
            upper.join(" "),
            lower.join(" ")
        );
        let line: Vec<String> = pts
            .iter()
            .map(|(b, m, _)| format!("{:.1},{:.1}", x(*b), y(*m)))
            .collect();
        svg += &format!(
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>\n",
            line.join(" ")
        );
        svg += &legend_entry(
            w - right + 12.0,
            top + 18.0 * k as f64 + 10.0,
            color,
            strategy,
        );
    }
    svg + "</svg>\n"
}

/// F1 against the label budget (log scale, % of the stream), one panel per view, one line per
/// strategy family with one-standard-deviation bars; the full-data F1 at 100 % and a dashed line
/// at 95 % of it.
pub fn budget_curve_svg(report: &ExperimentReport, title: &str) -> String {
    let views: Vec<View> = [View::OnePass, View::Retrained]
        .into_iter()
        .filter(|&v| v == View::OnePass || report.curves.iter().any(|c| c.retrained.is_some()))
        .collect();
    let (panel_w, h, left, gap, top, bottom, legend) =
        (400.0, 440.0, 60.0, 50.0, 50.0, 50.0, 150.0);
    let w = left + views.len() as f64 * (panel_w + gap) + legend;
    let families = report.families();
    let min_rate = report.rates().first().copied().unwrap_or(0.01).min(1.0);
    let max_f1 = views
        .iter()
        .flat_map(|&v| {
            families
                .iter()
                .flat_map(move |f| report.budget_points(f, v))
                .chain(report.full_point(v))
                .map(|p| p.mean + p.std)
        })
        .fold(0.05, f64::max)
        * 1.1;
    // a margin either side so the end points sit off the axes
    let (lo, hi) = ((min_rate * 100.0).log10() - 0.15, 2.1);
    let span = (hi - lo).max(1e-6);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{left}\" y=\"20\" font-size=\"14\">{title}</text>\n"
    );
    for (k, &view) in views.iter().enumerate() {
        let x0 = left + k as f64 * (panel_w + gap);
        let x = |rate: f64| x0 + panel_w * ((rate * 100.0).log10() - lo) / span;
        let y = |f1: f64| top + (h - top - bottom) * (1.0 - f1 / max_f1);
        svg += &format!(
            "<text x=\"{x0}\" y=\"{}\">{}</text>\n",
            top - 10.0,
            view.title()
        );
        svg += &format!(
            "<polyline points=\"{x0},{top} {x0},{b} {},{b}\" fill=\"none\" stroke=\"black\"/>\n",
            x0 + panel_w,
            b = h - bottom
        );
        for i in 0..=5 {
            let f = max_f1 * i as f64 / 5.0;
            svg += &f1_tick(x0, y(f), f);
        }
        let mut ticks = report.rates();
        ticks.push(1.0);
        for r in ticks {
            svg += &format!(
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                x(r),
                h - bottom + 18.0,
                crate::select::strategy::percent(r)
            );
        }
        svg += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">labels, % of the stream (log)</text>\n",
            x0 + panel_w / 2.0,
            h - 12.0
        );
        if let Some(full) = report.full_point(view) {
            let target = 0.95 * full.mean;
            svg += &format!(
                "<line x1=\"{x0}\" y1=\"{t}\" x2=\"{}\" y2=\"{t}\" stroke=\"black\" stroke-dasharray=\"5,4\"/>\n\
                 <text x=\"{}\" y=\"{}\">95 % of full</text>\n",
                x0 + panel_w,
                x0 + 6.0,
                y(target) - 5.0,
                t = y(target)
            );
            svg += &marker(
                x(1.0),
                y(full.mean),
                y(full.mean + full.std),
                y((full.mean - full.std).max(0.0)),
                "black",
            );
        }
        for (f, family) in families.iter().enumerate() {
            let color = COLORS[f % COLORS.len()];
            let points = report.budget_points(family, view);
            let line: Vec<String> = points
                .iter()
                .map(|p| format!("{:.1},{:.1}", x(p.rate), y(p.mean)))
                .collect();
            svg += &format!(
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>\n",
                line.join(" ")
            );
            for p in &points {
                svg += &marker(
                    x(p.rate),
                    y(p.mean),
                    y(p.mean + p.std),
                    y((p.mean - p.std).max(0.0)),
                    color,
                );
            }
        }
    }
    let lx = w - legend + 10.0;
    for (f, family) in families
        .iter()
        .chain(std::iter::once(&"full".to_string()))
        .enumerate()
    {
        let color = if family == "full" {
            "black"
        } else {
            COLORS[f % COLORS.len()]
        };
        svg += &legend_entry(lx, top + 18.0 * f as f64 + 10.0, color, family);
    }
    svg + "</svg>\n"
}

/// A point with a vertical error bar.
fn marker(x: f64, y: f64, upper: f64, lower: f64, color: &str) -> String {
    format!(
        "<line x1=\"{x:.1}\" y1=\"{upper:.1}\" x2=\"{x:.1}\" y2=\"{lower:.1}\" stroke=\"{color}\"/>\n\
         <circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{color}\"/>\n"
    )
}

/// An F1 label left of the vertical axis at `axis_x`, level with `y`.
fn f1_tick(axis_x: f64, y: f64, f1: f64) -> String {
    format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{f1:.2}</text>\n",
        axis_x - 6.0,
        y + 4.0
    )
}

/// A legend row: a short line in `color` from `x`, then `label`.
fn legend_entry(x: f64, y: f64, color: &str, label: &str) -> String {
    format!(
        "<line x1=\"{x}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{color}\" stroke-width=\"3\"/>\n\
         <text x=\"{}\" y=\"{}\">{label}</text>\n",
        x + 24.0,
        x + 30.0,
        y + 4.0
    )
}
