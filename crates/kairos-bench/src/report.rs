//! Results: aligned tables on stdout, and the same figures as JSON for `--json FILE`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde_json::{Map, Value, json};

use crate::timing;

/// One scenario's results: its parameters, one or more tables, and notes.
#[derive(Debug)]
pub struct Report {
    scenario: &'static str,
    params: Map<String, Value>,
    tables: Vec<Table>,
    notes: Vec<String>,
    load_start: String,
    load_end: Option<String>,
}

/// A titled table; cells are JSON values so the same rows print and serialize.
#[derive(Debug)]
pub struct Table {
    title: String,
    columns: Vec<&'static str>,
    rows: Vec<Vec<Value>>,
}

impl Report {
    /// Starts a report and records the load average at its start.
    pub fn new(scenario: &'static str) -> Self {
        Report {
            scenario,
            params: Map::new(),
            tables: Vec::new(),
            notes: Vec::new(),
            load_start: timing::load_average(),
            load_end: None,
        }
    }

    /// Records a parameter of the run.
    pub fn param(&mut self, name: &str, value: impl Into<Value>) {
        self.params.insert(name.to_owned(), value.into());
    }

    /// Adds a table and returns it for filling.
    pub fn table(&mut self, title: impl Into<String>, columns: &[&'static str]) -> &mut Table {
        self.tables.push(Table { title: title.into(), columns: columns.to_vec(), rows: Vec::new() });
        let last = self.tables.len() - 1;
        &mut self.tables[last]
    }

    /// Adds a table of `metric`, `value`, `unit` rows, filled with [`Table::metric`].
    pub fn metric_table(&mut self, title: impl Into<String>) -> &mut Table {
        self.table(title, &["metric", "value", "unit"])
    }

    /// Adds a line printed under the tables.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Records the load average at the end; call once the measurement is over.
    pub fn finish(&mut self) {
        self.load_end = Some(timing::load_average());
    }

    /// The report as text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "== {} ==", self.scenario);
        let params: Vec<String> = self.params.iter().map(|(k, v)| format!("{k}={}", cell(v))).collect();
        let _ = writeln!(out, "params: {}", params.join(" "));
        let _ = writeln!(
            out,
            "load average (1/5/15 min): start {}, end {}",
            self.load_start,
            self.load_end.as_deref().unwrap_or("?")
        );
        for table in &self.tables {
            out.push('\n');
            table.render_into(&mut out);
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }

    /// The report as JSON: tables become arrays of `{column: value}` objects.
    pub fn to_json(&self) -> Value {
        let tables: Vec<Value> = self
            .tables
            .iter()
            .map(|t| {
                let rows: Vec<Value> = t
                    .rows
                    .iter()
                    .map(|row| {
                        let object: Map<String, Value> =
                            t.columns.iter().map(|c| (*c).to_owned()).zip(row.iter().cloned()).collect();
                        Value::Object(object)
                    })
                    .collect();
                json!({ "title": t.title, "rows": rows })
            })
            .collect();
        json!({
            "scenario": self.scenario,
            "params": self.params,
            "load_start": self.load_start,
            "load_end": self.load_end,
            "tables": tables,
            "notes": self.notes,
        })
    }
}

impl Table {
    /// Appends a row; it must have one cell per column.
    pub fn row(&mut self, cells: Vec<Value>) {
        debug_assert_eq!(cells.len(), self.columns.len(), "row width of table {}", self.title);
        self.rows.push(cells);
    }

    /// Appends a row of a [`Report::metric_table`].
    pub fn metric(&mut self, metric: &str, value: impl Into<Value>, unit: &str) {
        self.row(vec![metric.into(), value.into(), unit.into()]);
    }

    fn render_into(&self, out: &mut String) {
        let cells: Vec<Vec<String>> = self.rows.iter().map(|r| r.iter().map(cell).collect()).collect();
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                cells.iter().filter_map(|r| r.get(i)).map(String::len).chain([c.len()]).max().unwrap_or(0)
            })
            .collect();
        let _ = writeln!(out, "{}", self.title);
        let line = |out: &mut String, items: &mut dyn Iterator<Item = &str>| {
            let padded: Vec<String> = items.zip(&widths).map(|(s, w)| format!("{s:>w$}")).collect();
            let _ = writeln!(out, "  {}", padded.join("  ").trim_end());
        };
        line(out, &mut self.columns.iter().copied());
        for row in &cells {
            line(out, &mut row.iter().map(String::as_str));
        }
    }
}

/// A cell as text: integers as they are, other numbers with a precision that suits their size.
fn cell(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            match x.abs() {
                a if a >= 1000.0 => format!("{x:.0}"),
                a if a >= 10.0 => format!("{x:.1}"),
                _ => format!("{x:.2}"),
            }
        }
        other => other.to_string(),
    }
}

/// Writes every report to `path` as one JSON document.
///
/// # Errors
/// When the file cannot be written.
pub fn write_json(path: &Path, quick: bool, reports: &[Report]) -> anyhow::Result<()> {
    let document = json!({
        "tool": "kairos-bench",
        "version": env!("CARGO_PKG_VERSION"),
        "quick": quick,
        "reports": reports.iter().map(Report::to_json).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&document).context("cannot encode the results as JSON")?;
    std::fs::write(path, text + "\n").with_context(|| format!("cannot write results to {}", path.display()))
}
