//! `outrider-model batch`: scores a CSV or NDJSON file of transactions into a CSV or
//! NDJSON file of scores (`line`, the row's id when it has one, `score`),
//! with a progress bar. A line that cannot be scored goes to an error report
//! (`{"line": n, "error": "..."}` per line) and every other line is still
//! scored: nothing good is dropped for a bad neighbour.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, IoContext, Result};
use crate::serve::model::LoadedModel;
use crate::serve::rows::{RowSchema, Score};

/// Rows per model run.
pub const CHUNK_ROWS: usize = 4096;
/// Columns (CSV) or fields (NDJSON) echoed as the row's id, first found.
pub const ID_FIELDS: [&str; 2] = ["transaction_id", "id"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Ndjson,
}

impl Format {
    /// From a file name: `.csv`, or `.ndjson` / `.jsonl` / `.json`.
    pub fn of(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Self::Csv),
            "ndjson" | "jsonl" | "json" => Some(Self::Ndjson),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct BatchOptions {
    pub input: PathBuf,
    pub output: PathBuf,
    /// Where bad lines are reported; by default `<output>.errors.ndjson`.
    pub errors: Option<PathBuf>,
    pub progress: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchSummary {
    /// Data lines read (blank lines aside).
    pub rows: u64,
    pub scored: u64,
    pub failed: u64,
    /// The error report, when some lines failed.
    pub errors: Option<PathBuf>,
    pub seconds: f64,
    pub rows_per_second: f64,
}

/// Default error report path for an output file.
pub fn errors_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".errors.ndjson");
    output.with_file_name(name)
}

/// Scored rows waiting for their model run, and where their answers go.
struct Chunk<'a> {
    schema: &'a RowSchema,
    values: Vec<f32>,
    /// (line number, id) of each row in `values`.
    rows: Vec<(u64, Option<Value>)>,
}

/// The output file in its format.
enum Sink {
    Csv(Box<csv::Writer<BufWriter<File>>>),
    Ndjson(BufWriter<File>),
}

#[derive(Serialize)]
struct ScoreLine<'a> {
    line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a Value>,
    score: Score,
}

#[derive(Serialize)]
struct ErrorLine<'a> {
    line: u64,
    error: &'a str,
}

impl Sink {
    fn create(path: &Path, format: Format, id_column: Option<&str>) -> Result<Self> {
        let file = BufWriter::with_capacity(1 << 20, File::create(path).at(path)?);
        Ok(match format {
            Format::Csv => {
                let mut w = csv::Writer::from_writer(file);
                let mut header = vec!["line"];
                header.extend(id_column);
                header.push("score");
                w.write_record(&header)
                    .map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))?;
                Self::Csv(Box::new(w))
            }
            Format::Ndjson => Self::Ndjson(file),
        })
    }

    fn write(
        &mut self,
        line: u64,
        id: Option<&Value>,
        score: Score,
        with_id: bool,
    ) -> std::io::Result<()> {
        match self {
            Self::Csv(w) => {
                w.write_field(line.to_string())?;
                if with_id {
                    match id {
                        Some(Value::String(s)) => w.write_field(s)?,
                        Some(Value::Null) | None => w.write_field("")?,
                        Some(other) => w.write_field(other.to_string())?,
                    }
                }
                w.write_field(score.to_string())?;
                w.write_record(None::<&[u8]>)?;
                Ok(())
            }
            Self::Ndjson(w) => {
                serde_json::to_writer(&mut *w, &ScoreLine { line, id, score })?;
                w.write_all(b"\n")
            }
        }
    }

    fn finish(self) -> std::io::Result<()> {
        match self {
            Self::Csv(mut w) => w.flush(),
            Self::Ndjson(mut w) => w.flush(),
        }
    }
}

/// The error report, created at the first bad line.
struct ErrorReport {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    count: u64,
}

impl ErrorReport {
    fn new(path: PathBuf) -> Result<Self> {
        // A report left by an earlier run would be mistaken for this one's.
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&path, e)),
            _ => {}
        }
        Ok(Self {
            path,
            file: None,
            count: 0,
        })
    }

    fn report(&mut self, line: u64, error: &str) -> Result<()> {
        if self.file.is_none() {
            self.file = Some(BufWriter::new(File::create(&self.path).at(&self.path)?));
        }
        let out = self.file.as_mut().expect("created above");
        serde_json::to_writer(&mut *out, &ErrorLine { line, error })
            .map_err(|e| Error::io(&self.path, e.into()))?;
        out.write_all(b"\n").at(&self.path)?;
        self.count += 1;
        Ok(())
    }

    fn finish(self) -> Result<Option<PathBuf>> {
        match self.file {
            Some(mut f) => {
                f.flush().at(&self.path)?;
                Ok(Some(self.path))
            }
            None => Ok(None),
        }
    }
}

impl Chunk<'_> {
    fn is_full(&self) -> bool {
        self.rows.len() >= CHUNK_ROWS
    }

    /// Scores the chunk and writes its lines.
    fn flush(
        &mut self,
        model: &LoadedModel,
        sink: &mut Sink,
        with_id: bool,
        output: &Path,
    ) -> Result<u64> {
        if self.rows.is_empty() {
            return Ok(0);
        }
        let tensor = self.schema.tensor(&self.values)?;
        let scores = self.schema.scores(&model.onnx.run(vec![tensor])?)?;
        for ((line, id), score) in self.rows.iter().zip(scores) {
            sink.write(*line, id.as_ref(), score, with_id).at(output)?;
        }
        let n = self.rows.len() as u64;
        self.rows.clear();
        self.values.clear();
        Ok(n)
    }
}

fn progress_bar(total: u64, enabled: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(total),
        if enabled {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} scoring [{bar:30}] {percent:>3}% {bytes}/{total_bytes} {msg} ({eta} left)",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Scores `options.input` with `model` into `options.output`.
pub fn score_file(model: &LoadedModel, options: &BatchOptions) -> Result<BatchSummary> {
    let schema = model.rows()?;
    let input_format = Format::of(&options.input).ok_or_else(|| {
        Error::invalid(
            "in",
            format!("{}: use a .csv or .ndjson file", options.input.display()),
        )
    })?;
    let output_format = Format::of(&options.output).unwrap_or(input_format);
    let size = std::fs::metadata(&options.input).at(&options.input)?.len();
    let bar = progress_bar(size, options.progress);
    let mut errors = ErrorReport::new(
        options
            .errors
            .clone()
            .unwrap_or_else(|| errors_path(&options.output)),
    )?;
    let started = Instant::now();
    let mut chunk = Chunk {
        schema,
        values: Vec::with_capacity(CHUNK_ROWS * schema.width()),
        rows: Vec::with_capacity(CHUNK_ROWS),
    };
    let (rows, scored) = match input_format {
        Format::Csv => csv_rows(model, options, output_format, &mut chunk, &mut errors, &bar)?,
        Format::Ndjson => {
            ndjson_rows(model, options, output_format, &mut chunk, &mut errors, &bar)?
        }
    };
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let failed = errors.count;
    Ok(BatchSummary {
        rows,
        scored,
        failed,
        errors: errors.finish()?,
        seconds,
        rows_per_second: rows as f64 / seconds.max(1e-9),
    })
}

fn csv_rows(
    model: &LoadedModel,
    options: &BatchOptions,
    output_format: Format,
    chunk: &mut Chunk,
    errors: &mut ErrorReport,
    bar: &ProgressBar,
) -> Result<(u64, u64)> {
    let schema = chunk.schema;
    let input = &options.input;
    let file = File::open(input).at(input)?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .buffer_capacity(1 << 20)
        .from_reader(file);
    let headers = reader
        .byte_headers()
        .map_err(|e| Error::invalid(input.display().to_string(), format!("no CSV header: {e}")))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h == name.as_bytes());
    let columns: Vec<usize> = schema
        .features
        .iter()
        .map(|f| {
            column(f).ok_or_else(|| {
                Error::invalid(
                    input.display().to_string(),
                    format!(
                        "no column `{f}`; the model takes {}",
                        schema.features.join(", ")
                    ),
                )
            })
        })
        .collect::<Result<_>>()?;
    let id_column = ID_FIELDS
        .iter()
        .find_map(|name| column(name).map(|i| (i, *name)));
    let mut sink = Sink::create(&options.output, output_format, id_column.map(|(_, n)| n))?;
    let (mut rows, mut scored) = (0u64, 0u64);
    let mut record = csv::ByteRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                rows += 1;
                errors.report(
                    e.position().map_or(line, |p| p.line()),
                    &format!("not CSV: {e}"),
                )?;
                continue;
            }
        }
        let line = record.position().map_or(line, |p| p.line());
        if record.len() == 1 && record[0].is_empty() {
            continue;
        }
        rows += 1;
        if record.len() != headers.len() {
            errors.report(
                line,
                &format!(
                    "has {} fields, the header has {}",
                    record.len(),
                    headers.len()
                ),
            )?;
            continue;
        }
        let start = chunk.values.len();
        let parsed = columns.iter().enumerate().try_for_each(|(i, &c)| {
            let cell = std::str::from_utf8(&record[c]).map_err(|_| "is not UTF-8".to_owned());
            let value = cell.and_then(|text| schema.text_value(i, text));
            match value {
                Ok(x) => {
                    chunk.values.push(x);
                    Ok(())
                }
                Err(m) => Err(format!("{}: {m}", schema.features[i])),
            }
        });
        if let Err(message) = parsed {
            chunk.values.truncate(start);
            errors.report(line, &message)?;
            continue;
        }
        let id =
            id_column.map(|(c, _)| Value::String(String::from_utf8_lossy(&record[c]).into_owned()));
        chunk.rows.push((line, id));
        if chunk.is_full() {
            scored += chunk.flush(model, &mut sink, id_column.is_some(), &options.output)?;
            bar.set_position(reader.position().byte());
            bar.set_message(format!("{scored} rows"));
        }
    }
    scored += chunk.flush(model, &mut sink, id_column.is_some(), &options.output)?;
    sink.finish().at(&options.output)?;
    Ok((rows, scored))
}

fn ndjson_rows(
    model: &LoadedModel,
    options: &BatchOptions,
    output_format: Format,
    chunk: &mut Chunk,
    errors: &mut ErrorReport,
    bar: &ProgressBar,
) -> Result<(u64, u64)> {
    let schema = chunk.schema;
    let input = &options.input;
    let mut reader = BufReader::with_capacity(1 << 20, File::open(input).at(input)?);
    // The id column of a CSV output: the first id field of the first row.
    let mut sink: Option<(Sink, bool)> = None;
    let (mut rows, mut scored, mut line, mut read) = (0u64, 0u64, 0u64, 0u64);
    let mut text = Vec::new();
    loop {
        text.clear();
        let n = reader.read_until(b'\n', &mut text).at(input)?;
        if n == 0 {
            break;
        }
        read += n as u64;
        line += 1;
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        rows += 1;
        let parsed = serde_json::from_slice::<Value>(&text)
            .map_err(|e| Error::invalid("line", format!("not JSON: {e}")))
            .and_then(|row| schema.push_json_row(&row, &mut chunk.values).map(|()| row));
        let row = match parsed {
            Ok(row) => row,
            Err(e) => {
                errors.report(line, &e.to_string())?;
                continue;
            }
        };
        let id_field = ID_FIELDS.iter().find(|f| row.get(**f).is_some()).copied();
        if sink.is_none() {
            let id_column = if output_format == Format::Csv {
                id_field
            } else {
                Some("id")
            };
            sink = Some((
                Sink::create(&options.output, output_format, id_column)?,
                id_column.is_some(),
            ));
        }
        let id = id_field.map(|f| row[f].clone());
        chunk.rows.push((line, id));
        if chunk.is_full()
            && let Some((sink, with_id)) = sink.as_mut()
        {
            scored += chunk.flush(model, sink, *with_id, &options.output)?;
            bar.set_position(read);
            bar.set_message(format!("{scored} rows"));
        }
    }
    let (mut sink, with_id) = match sink {
        Some(s) => s,
        // No good line at all: still write an (empty) output.
        None => (Sink::create(&options.output, output_format, None)?, false),
    };
    scored += chunk.flush(model, &mut sink, with_id, &options.output)?;
    sink.finish().at(&options.output)?;
    Ok((rows, scored))
}
