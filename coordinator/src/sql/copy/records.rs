//! COPY's record and field splitting: finding where each record of PostgreSQL's text or CSV
//! format ends in the client's byte stream, and parsing a record's fields straight into one
//! Arrow string builder per column, so that a field is copied once, from the client's bytes
//! into its column. Pure functions over bytes; no I/O, no table types (the loader casts the
//! columns afterwards).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringBuilder};

use super::CopyFormat;

/// Where the search for the end of the first unfinished record stopped: data arrives in
/// chunks, and a record (a long quoted CSV field above all) may span many of them, so each
/// byte is scanned once, not once per chunk.
#[derive(Debug, Default, Clone, Copy)]
pub struct RecordScan {
    /// How many bytes of the record have been scanned.
    scanned: usize,
    /// Whether the scan stopped inside a quoted CSV field.
    quoted: bool,
}

impl RecordScan {
    /// How many bytes of the unfinished record have been scanned (and are buffered).
    pub fn scanned(&self) -> usize {
        self.scanned
    }

    /// Returns the index of the newline that ends the record starting at `data[0]`, if the
    /// data holds all of it, continuing from where the last call for this record stopped. In
    /// CSV a newline inside quotes does not end the record. After `Some`, the scan is reset
    /// for the next record.
    pub fn record_end(&mut self, data: &[u8], format: &CopyFormat) -> Option<usize> {
        let mut index = self.scanned;
        if !format.csv {
            return match data[index..].iter().position(|b| *b == b'\n') {
                Some(offset) => {
                    *self = RecordScan::default();
                    Some(index + offset)
                }
                None => {
                    self.scanned = data.len();
                    None
                }
            };
        }
        let mut quoted = self.quoted;
        while index < data.len() {
            let byte = data[index];
            if quoted && byte == format.escape && format.escape != format.quote {
                match data.get(index + 1) {
                    Some(next) if *next == format.quote => {
                        index += 2;
                        continue;
                    }
                    Some(_) => {}
                    // Whether it escapes a quote is only known with the next chunk.
                    None => break,
                }
            }
            if byte == format.quote {
                quoted = !quoted;
            } else if byte == b'\n' && !quoted {
                *self = RecordScan::default();
                return Some(index);
            }
            index += 1;
        }
        self.scanned = index;
        self.quoted = quoted;
        None
    }
}

/// The COPY's columns being filled, one string builder per column.
pub struct ColumnBuilders {
    builders: Vec<StringBuilder>,
    rows: usize,
    /// A field whose text differs from its bytes (escapes, quotes) is assembled here.
    scratch: String,
}

/// A record with another number of fields than the COPY has columns.
#[derive(Debug, PartialEq, Eq)]
pub struct FieldCountMismatch {
    /// How many fields the record has (counted up to one past the columns).
    pub found: usize,
}

impl ColumnBuilders {
    /// Builders for `columns` columns.
    pub fn new(columns: usize) -> ColumnBuilders {
        ColumnBuilders {
            builders: (0..columns).map(|_| StringBuilder::new()).collect(),
            rows: 0,
            scratch: String::new(),
        }
    }

    /// How many records have been added since the last [`ColumnBuilders::finish`].
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The columns so far, leaving the builders empty.
    pub fn finish(&mut self) -> Vec<ArrayRef> {
        self.rows = 0;
        self.builders
            .iter_mut()
            .map(|builder| Arc::new(builder.finish()) as ArrayRef)
            .collect()
    }

    /// Adds one record (without its newline). After an error the builders are inconsistent
    /// and must not be finished: a COPY with a malformed record fails as a whole.
    pub fn push_record(
        &mut self,
        record: &str,
        format: &CopyFormat,
    ) -> Result<(), FieldCountMismatch> {
        let found = if format.csv {
            self.push_csv(record, format)
        } else {
            self.push_text(record, format)
        };
        if found != self.builders.len() {
            return Err(FieldCountMismatch { found });
        }
        self.rows += 1;
        Ok(())
    }

    /// Appends field `index` (if the record has not already run past the columns).
    fn append(&mut self, index: usize, value: Option<&str>) {
        if let Some(builder) = self.builders.get_mut(index) {
            builder.append_option(value);
        }
    }

    /// PostgreSQL's text format: fields split at the delimiter, backslash escapes undone, the
    /// NULL string (`\N`) as NULL. Returns the number of fields.
    fn push_text(&mut self, line: &str, format: &CopyFormat) -> usize {
        let mut count = 0;
        for raw in line.split(format.delimiter as char) {
            if count > self.builders.len() {
                break;
            }
            if raw == format.null {
                self.append(count, None);
            } else if !raw.contains('\\') {
                self.append(count, Some(raw));
            } else {
                let mut text = std::mem::take(&mut self.scratch);
                text.clear();
                unescape_text(raw, &mut text);
                self.append(count, Some(&text));
                self.scratch = text;
            }
            count += 1;
        }
        count
    }

    /// CSV: quoted fields keep delimiters, newlines and (escaped) quotes; an unquoted field
    /// equal to the NULL string is NULL, a quoted one never is. Returns the number of fields.
    fn push_csv(&mut self, record: &str, format: &CopyFormat) -> usize {
        let bytes = record.as_bytes();
        let mut count = 0;
        let mut start = 0;
        loop {
            if count > self.builders.len() {
                return count;
            }
            // Fast path: a field without quotes is a slice of the record.
            let plain_end = bytes[start..]
                .iter()
                .position(|b| *b == format.delimiter || *b == format.quote)
                .map_or(bytes.len(), |offset| start + offset);
            if plain_end == bytes.len() || bytes[plain_end] == format.delimiter {
                let field = &record[start..plain_end];
                self.append(count, (field != format.null).then_some(field));
                count += 1;
                if plain_end == bytes.len() {
                    return count;
                }
                start = plain_end + 1;
                continue;
            }
            let mut text = std::mem::take(&mut self.scratch);
            text.clear();
            let end = quoted_csv_field(record, start, format, &mut text);
            self.append(count, Some(&text));
            self.scratch = text;
            count += 1;
            if end == bytes.len() {
                return count;
            }
            start = end + 1;
        }
    }
}

/// Undoes PostgreSQL's text-format backslash escapes of `raw` into `out`.
fn unescape_text(raw: &str, out: &mut String) {
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('v') => out.push('\u{b}'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
}

/// Reads a CSV field starting at `start` that holds a quote somewhere into `out`; returns the
/// index of the delimiter that ends it (or the record's length). Quotes may open and close
/// anywhere in the field; inside them the delimiter is text and the escape character followed
/// by a quote is a literal quote. The delimiter, quote and escape are ASCII, so every index
/// this stops at is a character boundary.
fn quoted_csv_field(record: &str, start: usize, format: &CopyFormat, out: &mut String) -> usize {
    let bytes = record.as_bytes();
    let mut in_quotes = false;
    let mut copied_to = start;
    let mut index = start;
    while index < bytes.len() {
        let byte = bytes[index];
        if in_quotes {
            if byte == format.escape && bytes.get(index + 1) == Some(&format.quote) {
                out.push_str(&record[copied_to..index]);
                out.push(format.quote as char);
                index += 2;
                copied_to = index;
                continue;
            }
            if byte == format.quote {
                out.push_str(&record[copied_to..index]);
                in_quotes = false;
                copied_to = index + 1;
            }
        } else if byte == format.quote {
            out.push_str(&record[copied_to..index]);
            in_quotes = true;
            copied_to = index + 1;
        } else if byte == format.delimiter {
            break;
        }
        index += 1;
    }
    out.push_str(&record[copied_to..index]);
    index
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, StringArray};

    use super::*;

    fn text() -> CopyFormat {
        CopyFormat {
            csv: false,
            delimiter: b'\t',
            null: "\\N".into(),
            header: false,
            quote: b'"',
            escape: b'"',
        }
    }

    fn csv() -> CopyFormat {
        CopyFormat {
            csv: true,
            delimiter: b',',
            null: String::new(),
            header: false,
            quote: b'"',
            escape: b'"',
        }
    }

    /// The fields of one record, parsed as the loader parses them.
    fn fields(record: &str, format: &CopyFormat, columns: usize) -> Vec<Option<String>> {
        let mut builders = ColumnBuilders::new(columns);
        builders.push_record(record, format).unwrap();
        builders
            .finish()
            .iter()
            .map(|array| {
                let array = array.as_any().downcast_ref::<StringArray>().unwrap();
                array.is_valid(0).then(|| array.value(0).to_string())
            })
            .collect()
    }

    #[test]
    fn text_format_unescapes_and_reads_nulls() {
        assert_eq!(
            fields("1\ta\\tb\t\\N\tc\\\\d", &text(), 4),
            vec![
                Some("1".into()),
                Some("a\tb".into()),
                None,
                Some("c\\d".into())
            ]
        );
    }

    #[test]
    fn csv_quotes_keep_delimiters_and_mark_non_null() {
        assert_eq!(
            fields("1,\"x, \"\"y\"\"\",,\"\"", &csv(), 4),
            vec![
                Some("1".into()),
                Some("x, \"y\"".into()),
                None,
                Some(String::new())
            ]
        );
    }

    #[test]
    fn csv_quotes_may_open_and_close_inside_a_field() {
        assert_eq!(
            fields("ab\"c,d\"e,\"é\"ü,", &csv(), 3),
            vec![Some("abc,de".into()), Some("éü".into()), None]
        );
    }

    #[test]
    fn a_csv_escape_other_than_the_quote_escapes_quotes_only_inside_them() {
        let format = CopyFormat {
            escape: b'\\',
            ..csv()
        };
        assert_eq!(
            fields("\"a\\\"b\",c\\d", &format, 2),
            vec![Some("a\"b".into()), Some("c\\d".into())]
        );
    }

    #[test]
    fn a_record_with_another_field_count_is_refused() {
        let mut builders = ColumnBuilders::new(2);
        assert_eq!(
            builders.push_record("1,2,3", &csv()),
            Err(FieldCountMismatch { found: 3 })
        );
        let mut builders = ColumnBuilders::new(2);
        assert_eq!(
            builders.push_record("1", &csv()),
            Err(FieldCountMismatch { found: 1 })
        );
        // Counting stops one past the columns: a huge record costs no more fields.
        let mut builders = ColumnBuilders::new(2);
        let long = vec!["x"; 10_000].join("\t");
        assert_eq!(
            builders.push_record(&long, &text()),
            Err(FieldCountMismatch { found: 3 })
        );
    }

    #[test]
    fn csv_records_may_span_lines_inside_quotes() {
        let data = b"1,\"two\nlines\"\n2,x\n";
        let end = RecordScan::default().record_end(data, &csv()).unwrap();
        assert_eq!(&data[..end], b"1,\"two\nlines\"");
        assert_eq!(
            RecordScan::default().record_end(b"no newline yet", &csv()),
            None
        );
    }

    #[test]
    fn a_record_arriving_in_chunks_is_scanned_once_and_ends_where_it_would_whole() {
        let format = CopyFormat {
            escape: b'\\',
            ..csv()
        };
        let whole = b"1,\"a\\\"\nb\",c\n2\n";
        let expected = RecordScan::default().record_end(whole, &format);
        assert_eq!(expected, Some(11));
        // Split anywhere, as chunks arrive: a chunk ending on the escape character must not
        // decide whether it escapes the quote that follows.
        for split in 1..whole.len() {
            let mut scan = RecordScan::default();
            let first = scan.record_end(&whole[..split], &format);
            let end = first.or_else(|| {
                assert!(scan.scanned() <= split);
                scan.record_end(whole, &format)
            });
            assert_eq!(end, expected, "split at {split}");
        }
    }
}
