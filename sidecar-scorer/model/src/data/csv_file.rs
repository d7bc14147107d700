//! Transactions as CSV files (a header row, then one transaction per line).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::transaction::Transaction;
use crate::error::{Error, IoContext, Result};

/// Writes transactions with a header row.
pub fn write(path: &Path, rows: &[Transaction]) -> Result<()> {
    let file = File::create(path).at(path)?;
    write_to(BufWriter::new(file), rows)
        .map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))
}

pub fn write_to<W: Write>(out: W, rows: &[Transaction]) -> Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    for row in rows {
        writer
            .serialize(row)
            .map_err(|e| Error::invalid("csv", e.to_string()))?;
    }
    writer
        .flush()
        .map_err(|e| Error::invalid("csv", e.to_string()))
}

/// Reads labelled transactions; the first bad line fails the read with its
/// line number (training needs every row it was given).
pub fn read(path: &Path) -> Result<Vec<Transaction>> {
    let file = File::open(path).at(path)?;
    let mut reader = csv::Reader::from_reader(std::io::BufReader::new(file));
    let mut rows = Vec::new();
    for record in reader.deserialize() {
        let row: Transaction = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            let what = match e.kind() {
                csv::ErrorKind::Deserialize { err, .. } => match err.field() {
                    Some(i) => format!("column {}: {}", i + 1, err.kind()),
                    None => err.kind().to_string(),
                },
                other => format!("{other:?}"),
            };
            Error::invalid(format!("{}:{line}", path.display()), what)
        })?;
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(Error::invalid(
            path.display().to_string(),
            "no transactions",
        ));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::generator::{GeneratorConfig, generate};

    #[test]
    fn rows_round_trip() {
        let rows = generate(&GeneratorConfig {
            rows: 300,
            ..GeneratorConfig::default()
        })
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        write(&path, &rows).unwrap();
        assert_eq!(read(&path).unwrap(), rows);
        let header = std::fs::read_to_string(&path).unwrap();
        assert!(
            header
                .starts_with("transaction_id,timestamp,customer_id,amount,merchant_category,hour,")
        );
    }

    #[test]
    fn a_bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        let rows = generate(&GeneratorConfig {
            rows: 3,
            ..GeneratorConfig::default()
        })
        .unwrap();
        write(&path, &rows).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines[2] = lines[2].replacen(',', ",x", 3);
        std::fs::write(&path, lines.join("\n")).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("t.csv:3"), "{err}");
    }
}
