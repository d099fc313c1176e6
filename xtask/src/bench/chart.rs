//! One SVG chart per scenario (plotters, SVG backend only): horizontal bars, one group per
//! throughput-like measurement, one bar per side (medians over the rounds).

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use plotters::prelude::*;

use super::results::{Measurement, Results, ScenarioResults, median};

/// The unit a scenario's chart shows: the first of these its measurements use.
const CHART_UNITS: [&str; 4] = ["msg/s", "events/s", "ns", "runs"];

const COLOURS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

/// Writes `<dir>/<scenario>.svg` for every scenario with something to chart.
pub fn all(results: &Results, dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, scenario) in &results.scenarios {
        chart(name, scenario, &dir.join(format!("{name}.svg")))?;
    }
    Ok(())
}

/// Groups (label, per-side medians) of the charted unit, and the sides in order.
type Groups = (Vec<(String, Vec<f64>)>, Vec<String>, String);

fn groups(scenario: &ScenarioResults) -> Option<Groups> {
    let unit = CHART_UNITS
        .iter()
        .find(|u| scenario.measurements.iter().any(|m| m.unit == **u))?;
    let charted: Vec<&Measurement> = scenario
        .measurements
        .iter()
        .filter(|m| m.unit == *unit)
        .collect();
    let mut sides: Vec<String> = Vec::new();
    let mut rows: Vec<(String, usize)> = Vec::new();
    for m in &charted {
        if !sides.contains(&m.side) {
            sides.push(m.side.clone());
        }
        let row = (m.metric.clone(), m.size);
        if !rows.contains(&row) {
            rows.push(row);
        }
    }
    let groups = rows
        .into_iter()
        .map(|(metric, size)| {
            let values = sides
                .iter()
                .map(|side| {
                    let v: Vec<f64> = charted
                        .iter()
                        .filter(|m| &m.side == side && m.metric == metric && m.size == size)
                        .map(|m| m.value)
                        .collect();
                    median(&v)
                })
                .collect();
            let label = if size > 0 {
                format!("{metric}, {size} B")
            } else {
                metric
            };
            (label, values)
        })
        .collect();
    Some((groups, sides, (*unit).to_string()))
}

fn chart(name: &str, scenario: &ScenarioResults, path: &Path) -> Result<()> {
    let Some((groups, sides, unit)) = groups(scenario) else {
        return Ok(());
    };
    let per_group = sides.len() as f64 + 1.5;
    let height_units = groups.len() as f64 * per_group;
    let max = groups
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let pixels = (160.0 + height_units * 16.0) as u32;
    let root = SVGBackend::new(path, (900, pixels)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{name} ({unit}, medians; longer is better for rates)"),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(8)
        .build_cartesian_2d(0.0..max * 1.15, 0.0..height_units)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_desc(unit.clone())
        .draw()
        .map_err(|e| err(&e))?;
    for (g, (label, _)) in groups.iter().enumerate() {
        let top = height_units - g as f64 * per_group;
        chart
            .draw_series(std::iter::once(Text::new(
                label.clone(),
                (max * 0.005, top - 0.2),
                ("sans-serif", 13),
            )))
            .map_err(|e| err(&e))?;
    }
    for (s, side) in sides.iter().enumerate() {
        let colour = COLOURS[s % COLOURS.len()];
        let bars = groups.iter().enumerate().filter_map(|(g, (_, values))| {
            let value = values.get(s).copied().filter(|v| v.is_finite())?;
            let top = height_units - g as f64 * per_group - 1.2 - s as f64;
            Some(Rectangle::new(
                [(0.0, top), (value, top - 0.85)],
                colour.filled(),
            ))
        });
        chart
            .draw_series(bars)
            .map_err(|e| err(&e))?
            .label(side.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
