//! The one CSV dialect of every verb: [`CsvReader`] line by line, [`parse_csv`] for a
//! whole file.

use super::DataError;

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(s)
}

/// The one CSV dialect of every verb, read line by line (so a live pipe can be
/// classified as it arrives).
///
/// A UTF-8 byte-order mark at the start of line 1 is ignored, and so are blank
/// lines. The first other line is the header naming the columns (not all numeric,
/// no empty or repeated name); every further line is one frame of exactly as many
/// finite `f32` numbers. Cells may be `"quoted"` and padded with spaces. Errors
/// name the file, the row (1-based line number) and the column (1-based, with its
/// name).
#[derive(Debug, Clone)]
pub struct CsvReader {
    file: String,
    header: Option<Vec<String>>,
    line: usize,
}

impl CsvReader {
    /// A reader of the CSV `file` (the name used in errors).
    pub fn new(file: &str) -> Self {
        Self {
            file: file.to_string(),
            header: None,
            line: 0,
        }
    }

    /// The file name used in errors.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The 1-based number of the last line fed (0 before the first).
    pub fn line(&self) -> usize {
        self.line
    }

    /// The header, once read.
    pub fn header(&self) -> Option<&[String]> {
        self.header.as_deref()
    }

    /// The header at the end of the input; an input without one is an error.
    pub fn finish(&self) -> Result<&[String], DataError> {
        self.header().ok_or_else(|| DataError::EmptyFile {
            file: self.file.clone(),
        })
    }

    /// Reads the next line (a trailing `\n` or `\r\n` is ignored). Returns `true` when
    /// the line was a frame, whose values were appended to `out`; `false` for the
    /// header or a blank line. On an error `out` is left as it was.
    pub fn feed(&mut self, line: &str, out: &mut Vec<f32>) -> Result<bool, DataError> {
        self.line += 1;
        let line = line.strip_suffix('\n').unwrap_or(line);
        let mut line = line.strip_suffix('\r').unwrap_or(line);
        if self.line == 1 {
            line = line.strip_prefix('\u{feff}').unwrap_or(line);
        }
        if line.trim().is_empty() {
            return Ok(false);
        }
        let Some(header) = &self.header else {
            self.header = Some(self.parse_header(line)?);
            return Ok(false);
        };
        let file = || self.file.clone();
        let row = self.line;
        let d = header.len();
        let cells = line.split(',').count();
        if cells != d {
            return Err(DataError::RaggedRow {
                file: file(),
                row,
                expected: d,
                got: cells,
            });
        }
        let start = out.len();
        for (c, cell) in line.split(',').enumerate() {
            let t = unquote(cell);
            let err = match t.parse::<f32>() {
                Ok(v) if v.is_finite() => {
                    out.push(v);
                    continue;
                }
                Ok(_) => DataError::NonFinite {
                    file: file(),
                    row,
                    col: c + 1,
                    column: header[c].clone(),
                    cell: t.to_string(),
                },
                Err(_) => DataError::NonNumeric {
                    file: file(),
                    row,
                    col: c + 1,
                    column: header[c].clone(),
                    cell: t.to_string(),
                },
            };
            out.truncate(start);
            return Err(err);
        }
        Ok(true)
    }

    fn parse_header(&self, line: &str) -> Result<Vec<String>, DataError> {
        let file = || self.file.clone();
        let header: Vec<String> = line.split(',').map(|c| unquote(c).to_string()).collect();
        if header.iter().all(|h| h.parse::<f64>().is_ok()) {
            return Err(DataError::MissingHeader { file: file() });
        }
        for (i, h) in header.iter().enumerate() {
            if h.is_empty() {
                return Err(DataError::EmptyColumnName {
                    file: file(),
                    col: i + 1,
                });
            }
            if header[..i].contains(h) {
                return Err(DataError::DuplicateColumn {
                    file: file(),
                    name: h.clone(),
                });
            }
        }
        Ok(header)
    }
}

/// Parses one recording CSV with [`CsvReader`]: returns the header and the `T × D`
/// frames; `file` names the source in errors.
pub fn parse_csv(text: &str, file: &str) -> Result<(Vec<String>, Vec<f32>), DataError> {
    let mut r = CsvReader::new(file);
    let mut frames = Vec::new();
    for line in text.split_inclusive('\n') {
        r.feed(line, &mut frames)?;
    }
    Ok((r.finish()?.to_vec(), frames))
}

/// What differs between two headers, for [`DataError::HeaderMismatch`].
pub(super) fn header_detail(a: &[String], b: &[String]) -> String {
    if a.len() != b.len() {
        return format!("{} columns instead of {}", b.len(), a.len());
    }
    let i = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(0);
    format!("column {} is `{}` instead of `{}`", i + 1, b[i], a[i])
}
