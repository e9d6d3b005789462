//! SVG charts, drawn with plotters' SVG backend only: text is written as
//! SVG `<text>`, so no font library is needed at build or run time.
//!
//! Every figure carries a footer naming the machine and the date, and says
//! what the whiskers are (the lowest and highest round).

use std::fs;
use std::path::Path;

use plotters::prelude::*;

use crate::latency::fmt_micros;
use crate::report::{Cell, ChartList, PointSummary, Results, ScenarioSummary, Status};
use crate::stats::Spread;

/// The files [`write_all`] may write: each is removed first, so that a
/// chart the results no longer allow does not linger from an earlier run.
const FILES: [&str; 6] = [
    "throughput.svg",
    "latency-vs-rate.svg",
    "latency.svg",
    "bandwidth.svg",
    "memory.svg",
    "workers.svg",
];

/// Draws into `out` the charts the results allow and returns `(file,
/// caption)` for each: throughput over the sweep; latency next to slow
/// clients (else at the sweep's c=16); the 1 MiB bandwidth; memory per
/// idle connection; connections per worker process.
pub fn write_all(out: &Path, results: &Results) -> ChartList {
    for f in FILES {
        let _ = fs::remove_file(out.join(f));
    }
    let footer = footer(results);
    let footer = footer.as_str();
    let mut list = ChartList::new();
    // Draws `file` and lists it with `caption` if it was drawn (a chart
    // with nothing measured to show is not).
    let mut add = |file: &str, caption: &str, draw: &dyn Fn(&Path) -> Res| {
        let path = out.join(file);
        match draw(&path) {
            Ok(()) if path.exists() => list.push((file.to_string(), caption.to_string())),
            Ok(()) => {}
            Err(e) => eprintln!("bench: chart {file}: {e}"),
        }
    };
    let find = |name: &str| results.scenarios.iter().find(|s| s.name == name);
    if let Some(s) = find("sweep") {
        add(
            "throughput.svg",
            "Throughput vs keep-alive connections",
            &|path| throughput(path, s, footer),
        );
    }
    if let Some(s) = find("fixed-rate") {
        add(
            "latency-vs-rate.svg",
            "p99 latency at fixed rates (open loop)",
            &|path| latency_vs_rate(path, s, footer),
        );
    }
    if let Some(s) = find("slow-clients") {
        let last = s.points.len().saturating_sub(1);
        let title = "Normal clients' latency next to slow clients (open loop)";
        add(
            "latency.svg",
            "Latency of normal clients next to slow clients (open loop)",
            &|path| latency(path, s, last, title, footer),
        );
    } else if let Some(s) = find("sweep") {
        let i = s.points.iter().position(|p| p.x >= 16.0).unwrap_or(0);
        let title = format!(
            "Latency percentiles, keep-alive {} (closed loop)",
            s.points.get(i).map_or("", |p| p.label.as_str())
        );
        add("latency.svg", &title, &|path| {
            latency(path, s, i, &title, footer)
        });
    }
    if let Some(p) = find("large-file").and_then(|s| s.points.last()) {
        let title = format!("1 MiB file, {}: bandwidth", p.label);
        let data = measured_bars(p, |c| c.mib_per_sec);
        add("bandwidth.svg", &title, &|path| {
            bars(path, &title, "MiB/s", &data, footer)
        });
    }
    if let Some(p) = find("idle").and_then(|s| s.points.first()) {
        let title = format!("Server memory per idle connection ({})", p.label);
        let data = measured_bars(p, |c| c.pss_per_idle_conn_kib);
        let y_desc = "KiB of PSS per idle connection";
        add("memory.svg", &title, &|path| {
            bars(path, &title, y_desc, &data, footer)
        });
    }
    if let Some(p) = find("workers").and_then(|s| s.points.first()) {
        let title = format!("Connections per worker process ({})", p.label);
        let data: Vec<_> = p
            .cells
            .iter()
            .filter(|c| c.status == Status::Measured)
            .map(|c| (c.target.clone(), c.per_worker_conns.clone()))
            .collect();
        let y_desc = "connections held in mid-run (workers sorted by share)";
        add("workers.svg", &title, &|path| {
            groups(path, &title, y_desc, &data, footer)
        });
    }
    list
}

/// The line under every chart: the machine, the profile, what the
/// whiskers are, the pinning.
fn footer(results: &Results) -> String {
    format!(
        "{} · profile {}, median of {} rounds, whiskers min–max · {}",
        results.machine.label(),
        results.profile.name,
        results.profile.rounds,
        results.pinning
    )
}

/// One bar per measured server at `point`: `figure`'s median, min and max.
fn measured_bars(
    point: &PointSummary,
    figure: impl Fn(&Cell) -> Option<Spread>,
) -> Vec<(String, f64, f64, f64)> {
    point
        .cells
        .iter()
        .filter(|c| c.status == Status::Measured)
        .filter_map(|c| figure(c).map(|m| (c.target.clone(), m.median, m.min, m.max)))
        .collect()
}

/// Width and height of every chart, pixels.
const SIZE: (u32, u32) = (900, 520);

/// Colours for the series, in target order (colour-blind friendly).
const COLOURS: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(120, 120, 120),
    RGBColor(0, 0, 0),
];

type Res = Result<(), String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn colour(i: usize) -> RGBColor {
    COLOURS[i % COLOURS.len()]
}

/// Draws `footer` under the chart area and returns the area above it.
fn with_footer<'a>(
    root: &DrawingArea<SVGBackend<'a>, plotters::coord::Shift>,
    footer: &str,
) -> Result<DrawingArea<SVGBackend<'a>, plotters::coord::Shift>, String> {
    root.fill(&WHITE).map_err(err)?;
    let (main, foot) = root.split_vertically(SIZE.1 - 28);
    foot.draw_text(
        footer,
        &("sans-serif", 13).into_font().color(&RGBColor(90, 90, 90)),
        (10, 6),
    )
    .map_err(err)?;
    Ok(main)
}

/// Throughput against connections, one line per server, log x axis;
/// whiskers span the rounds.
pub fn throughput(path: &Path, s: &ScenarioSummary, footer: &str) -> Res {
    let series = measured_series(s, |c| c.rps.map(|r| (r.median, r.min, r.max)));
    if series.is_empty() {
        return Ok(());
    }
    let xmax = s.points.iter().map(|p| p.x).fold(1.0, f64::max) * 1.5;
    let ymax = series
        .iter()
        .flat_map(|(_, pts)| pts.iter().map(|p| p.3))
        .fold(1.0, f64::max)
        * 1.1;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    let main = with_footer(&root, footer)?;
    let mut chart = ChartBuilder::on(&main)
        .caption(
            "Throughput vs keep-alive connections (small file)",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((0.8f64..xmax).log_scale(), 0f64..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("connections")
        .y_desc("requests per second (median of rounds)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{:.0}k", y / 1000.0))
        .draw()
        .map_err(err)?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = colour(i);
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|p| (p.0, p.1)),
                c.stroke_width(2),
            ))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(
                pts.iter()
                    .map(|p| ErrorBar::new_vertical(p.0, p.2, p.1, p.3, c.stroke_width(1), 8)),
            )
            .map_err(err)?;
        chart
            .draw_series(pts.iter().map(|p| Circle::new((p.0, p.1), 3, c.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// p99 latency against the offered rate (as a percentage of the round's
/// calibrated maximum), one line per server, log y axis.
pub fn latency_vs_rate(path: &Path, s: &ScenarioSummary, footer: &str) -> Res {
    let series: Vec<_> = measured_series(s, |c| c.p99.map(|v| (v, v, v)))
        .into_iter()
        .filter(|(_, pts)| pts.iter().all(|p| p.0 > 0.0))
        .collect();
    if series.is_empty() {
        return Ok(());
    }
    let ys = || series.iter().flat_map(|(_, pts)| pts.iter().map(|p| p.1));
    let ymax = ys().fold(1.0, f64::max) * 2.0;
    let ymin = ys().fold(f64::MAX, f64::min).max(1.0) / 2.0;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    let main = with_footer(&root, footer)?;
    let mut chart = ChartBuilder::on(&main)
        .caption(
            "p99 latency at a fixed rate (16 keep-alive connections, open loop)",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..100f64, (ymin..ymax).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("offered rate, % of the reference's closed-loop maximum in the round")
        .y_desc("p99 latency (median of rounds)")
        .x_label_formatter(&|x| format!("{x:.0}%"))
        .y_label_formatter(&|y| fmt_micros(*y as u64))
        .draw()
        .map_err(err)?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = colour(i);
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|p| (p.0, p.1)),
                c.stroke_width(2),
            ))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|p| Circle::new((p.0, p.1), 3, c.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// Latency percentiles of one point, one line per server, log y axis.
pub fn latency(path: &Path, s: &ScenarioSummary, point: usize, title: &str, footer: &str) -> Res {
    let Some(p) = s.points.get(point) else {
        return Ok(());
    };
    let labels = ["p50", "p90", "p99", "p99.9", "max"];
    let series: Vec<(String, Vec<f64>)> = p
        .cells
        .iter()
        .filter(|c| c.status == Status::Measured)
        .filter_map(|c| {
            Some((
                c.target.clone(),
                vec![c.p50?, c.p90?, c.p99?, c.p999?, c.max?]
                    .into_iter()
                    .map(|v| v.max(1.0))
                    .collect(),
            ))
        })
        .collect();
    if series.is_empty() {
        return Ok(());
    }
    let ymax = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(10.0, f64::max)
        * 2.0;
    let ymin = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(f64::INFINITY, f64::min)
        .max(1.0)
        / 2.0;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    let main = with_footer(&root, footer)?;
    let mut chart = ChartBuilder::on(&main)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.3f64..4.3f64, (ymin..ymax).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(5)
        .x_desc("percentile (median of rounds)")
        .y_desc("latency")
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && (0.0..5.0).contains(&i) {
                labels[i as usize].to_string()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| fmt_micros(*y as u64))
        .draw()
        .map_err(err)?;
    for (i, (name, v)) in series.iter().enumerate() {
        let c = colour(i);
        chart
            .draw_series(LineSeries::new(
                v.iter().enumerate().map(|(k, y)| (k as f64, *y)),
                c.stroke_width(2),
            ))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(
                v.iter()
                    .enumerate()
                    .map(|(k, y)| Circle::new((k as f64, *y), 3, c.filled())),
            )
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// One bar per server (median, whiskers min–max).
pub fn bars(
    path: &Path,
    title: &str,
    y_desc: &str,
    bars: &[(String, f64, f64, f64)],
    footer: &str,
) -> Res {
    if bars.is_empty() {
        return Ok(());
    }
    let n = bars.len();
    let ymax = bars.iter().map(|b| b.3.max(b.1)).fold(1e-9, f64::max) * 1.15;
    let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    let main = with_footer(&root, footer)?;
    let mut chart = ChartBuilder::on(&main)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .y_desc(y_desc)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 && (i as usize) < names.len() {
                names[i as usize].clone()
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(err)?;
    for (i, b) in bars.iter().enumerate() {
        let x = i as f64;
        let c = colour(i);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x - 0.3, 0.0), (x + 0.3, b.1)],
                c.filled(),
            )))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(ErrorBar::new_vertical(
                x,
                b.2,
                b.1,
                b.3,
                BLACK.stroke_width(1),
                10,
            )))
            .map_err(err)?;
    }
    root.present().map_err(err)
}

/// Grouped bars: for each server, one bar per worker process.
pub fn groups(
    path: &Path,
    title: &str,
    y_desc: &str,
    groups: &[(String, Vec<f64>)],
    footer: &str,
) -> Res {
    let groups: Vec<&(String, Vec<f64>)> = groups.iter().filter(|g| !g.1.is_empty()).collect();
    if groups.is_empty() {
        return Ok(());
    }
    let n = groups.len();
    let ymax = groups
        .iter()
        .flat_map(|g| g.1.iter().copied())
        .fold(1e-9, f64::max)
        * 1.15;
    let names: Vec<String> = groups.iter().map(|g| g.0.clone()).collect();
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    let main = with_footer(&root, footer)?;
    let mut chart = ChartBuilder::on(&main)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .y_desc(y_desc)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 && (i as usize) < names.len() {
                names[i as usize].clone()
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(err)?;
    for (i, g) in groups.iter().enumerate() {
        let k = g.1.len() as f64;
        let w = 0.8 / k;
        for (j, v) in g.1.iter().enumerate() {
            let x0 = i as f64 - 0.4 + j as f64 * w;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x0 + w * 0.1, 0.0), (x0 + w * 0.9, *v)],
                    colour(j).filled(),
                )))
                .map_err(err)?;
        }
    }
    root.present().map_err(err)
}

/// One point of a line with its whisker: `(x, median, min, max)`.
type Whisker = (f64, f64, f64, f64);

/// `(target, [(x, median, min, max)])` for every target measured at some
/// point of `s`.
fn measured_series(
    s: &ScenarioSummary,
    value: impl Fn(&Cell) -> Option<(f64, f64, f64)>,
) -> Vec<(String, Vec<Whisker>)> {
    let mut out: Vec<(String, Vec<Whisker>)> = Vec::new();
    for p in &s.points {
        for c in &p.cells {
            if c.status != Status::Measured {
                continue;
            }
            let Some((m, lo, hi)) = value(c) else {
                continue;
            };
            match out.iter_mut().find(|(n, _)| *n == c.target) {
                Some((_, v)) => v.push((p.x, m, lo, hi)),
                None => out.push((c.target.clone(), vec![(p.x, m, lo, hi)])),
            }
        }
    }
    out
}
