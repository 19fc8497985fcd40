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
        let mut quoted = self.quoted;
        while index < data.len() {
            let byte = data[index];
            // Text format: a backslash makes the next byte data (an escaped newline is part of
            // the field). CSV: inside quotes, an escape other than the quote makes a following
            // quote or escape data.
            let escapes = if format.csv {
                quoted && byte == format.escape && format.escape != format.quote
            } else {
                byte == b'\\'
            };
            if escapes {
                match data.get(index + 1) {
                    Some(next)
                        if !format.csv || *next == format.quote || *next == format.escape =>
                    {
                        index += 2;
                        continue;
                    }
                    Some(_) => {}
                    // What it escapes is only known with the next chunk.
                    None => break,
                }
            }
            if format.csv && byte == format.quote {
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

    /// Whether the scan stopped inside a quoted CSV field.
    pub fn in_quotes(&self) -> bool {
        self.quoted
    }
}

/// The COPY's columns being filled, one string builder per column.
pub struct ColumnBuilders {
    builders: Vec<StringBuilder>,
    rows: usize,
    /// A field whose text differs from its bytes (escapes, quotes) is assembled here.
    scratch: String,
}

/// Why a record could not be added.
#[derive(Debug, PartialEq, Eq)]
pub enum RecordError {
    /// The record has another number of fields than the COPY has columns; `found` is counted
    /// up to one past the columns.
    FieldCount { found: usize },
    /// A text-format escape (`\ooo`, `\xhh`) spelled bytes that are not UTF-8.
    Encoding,
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
    pub fn push_record(&mut self, record: &str, format: &CopyFormat) -> Result<(), RecordError> {
        let found = if format.csv {
            self.push_csv(record, format)
        } else {
            self.push_text(record, format)?
        };
        if found != self.builders.len() {
            return Err(RecordError::FieldCount { found });
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

    /// PostgreSQL's text format: fields end at an unescaped delimiter, backslash escapes are
    /// undone, the NULL string (`\N`, compared before unescaping) is NULL. Returns the number
    /// of fields.
    fn push_text(&mut self, line: &str, format: &CopyFormat) -> Result<usize, RecordError> {
        let bytes = line.as_bytes();
        let mut count = 0;
        let mut start = 0;
        loop {
            if count > self.builders.len() {
                return Ok(count);
            }
            let mut end = start;
            let mut escaped = false;
            while end < bytes.len() && bytes[end] != format.delimiter {
                if bytes[end] == b'\\' {
                    escaped = true;
                    end += 1;
                }
                end += 1;
            }
            // A backslash ending the line escapes nothing; past the end means it did.
            let end = end.min(bytes.len());
            let raw = &line[start..end];
            if raw == format.null {
                self.append(count, None);
            } else if !escaped {
                self.append(count, Some(raw));
            } else {
                let mut text = std::mem::take(&mut self.scratch);
                text.clear();
                let unescaped = unescape_text(raw, &mut text);
                if unescaped.is_ok() {
                    self.append(count, Some(&text));
                }
                self.scratch = text;
                unescaped?;
            }
            count += 1;
            if end == bytes.len() {
                return Ok(count);
            }
            start = end + 1;
        }
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

/// The fields of one CSV record, as [`ColumnBuilders::push_record`] reads them (an unquoted
/// field equal to the NULL string is NULL), however many there are.
pub fn csv_fields(record: &str, format: &CopyFormat) -> Vec<Option<String>> {
    let bytes = record.as_bytes();
    let mut fields = Vec::new();
    let mut start = 0;
    loop {
        let plain_end = bytes[start..]
            .iter()
            .position(|b| *b == format.delimiter || *b == format.quote)
            .map_or(bytes.len(), |offset| start + offset);
        let end = if plain_end == bytes.len() || bytes[plain_end] == format.delimiter {
            let field = &record[start..plain_end];
            fields.push((field != format.null).then(|| field.to_string()));
            plain_end
        } else {
            let mut text = String::new();
            let end = quoted_csv_field(record, start, format, &mut text);
            fields.push(Some(text));
            end
        };
        if end >= bytes.len() {
            return fields;
        }
        start = end + 1;
    }
}

/// Undoes PostgreSQL's text-format backslash escapes of `raw` into `out`: `\t` and the other
/// control-character letters, one to three octal digits or `x` and one or two hex digits for
/// a byte, and any other character for itself (the delimiter, a newline, a backslash).
fn unescape_text(raw: &str, out: &mut String) -> Result<(), RecordError> {
    let mut bytes: Vec<u8> = Vec::with_capacity(raw.len());
    let input = raw.as_bytes();
    let mut index = 0;
    while index < input.len() {
        let byte = input[index];
        index += 1;
        if byte != b'\\' {
            bytes.push(byte);
            continue;
        }
        let Some(&next) = input.get(index) else {
            bytes.push(b'\\');
            break;
        };
        index += 1;
        let digits = |index: &mut usize, radix: u32, most: usize, first: u32| {
            let mut value = first;
            let mut taken = 0;
            while taken < most {
                match input.get(*index).and_then(|b| (*b as char).to_digit(radix)) {
                    Some(digit) => {
                        value = value * radix + digit;
                        *index += 1;
                        taken += 1;
                    }
                    None => break,
                }
            }
            (value, taken)
        };
        match next {
            b't' => bytes.push(b'\t'),
            b'n' => bytes.push(b'\n'),
            b'r' => bytes.push(b'\r'),
            b'b' => bytes.push(0x08),
            b'f' => bytes.push(0x0c),
            b'v' => bytes.push(0x0b),
            b'0'..=b'7' => {
                let (value, _) = digits(&mut index, 8, 2, u32::from(next - b'0'));
                // Three octal digits reach 511; PostgreSQL keeps the low byte.
                bytes.push((value & 0xff) as u8);
            }
            b'x' => match digits(&mut index, 16, 2, 0) {
                (value, taken) if taken > 0 => bytes.push(value as u8),
                _ => bytes.push(b'x'),
            },
            other => bytes.push(other),
        }
    }
    let text = String::from_utf8(bytes).map_err(|_| RecordError::Encoding)?;
    out.push_str(&text);
    Ok(())
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
            // The escape makes a following quote or escape data (with the default escape,
            // the quote itself, that is a doubled quote).
            let escaped = bytes
                .get(index + 1)
                .filter(|next| **next == format.quote || **next == format.escape);
            if let (true, Some(&next)) = (byte == format.escape, escaped) {
                out.push_str(&record[copied_to..index]);
                out.push(next as char);
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
    fn text_escapes_keep_delimiters_and_spell_bytes() {
        assert_eq!(
            fields("a\\\tb\t\\101\\x42\\x4\\7\t\\303\\251\tx\\", &text(), 4),
            vec![
                Some("a\tb".into()),
                Some("AB\u{4}\u{7}".into()),
                Some("é".into()),
                Some("x\\".into())
            ]
        );
        let mut builders = ColumnBuilders::new(1);
        assert_eq!(
            builders.push_record("\\377", &text()),
            Err(RecordError::Encoding)
        );
    }

    #[test]
    fn a_text_record_continues_after_an_escaped_newline() {
        let data = b"1\\\nmore\t2\n3\n";
        let end = RecordScan::default().record_end(data, &text()).unwrap();
        assert_eq!(&data[..end], b"1\\\nmore\t2");
        let record = std::str::from_utf8(&data[..end]).unwrap();
        assert_eq!(
            fields(record, &text(), 2),
            vec![Some("1\nmore".into()), Some("2".into())]
        );
    }

    #[test]
    fn a_csv_escape_escapes_itself_inside_quotes() {
        let format = CopyFormat {
            escape: b'\\',
            ..csv()
        };
        let data = b"\"C:\\dir\\\\\",x\n2,y\n";
        let end = RecordScan::default().record_end(data, &format).unwrap();
        assert_eq!(&data[..end], b"\"C:\\dir\\\\\",x");
        let record = std::str::from_utf8(&data[..end]).unwrap();
        assert_eq!(
            fields(record, &format, 2),
            vec![Some("C:\\dir\\".into()), Some("x".into())]
        );
    }

    #[test]
    fn a_record_with_another_field_count_is_refused() {
        let mut builders = ColumnBuilders::new(2);
        assert_eq!(
            builders.push_record("1,2,3", &csv()),
            Err(RecordError::FieldCount { found: 3 })
        );
        let mut builders = ColumnBuilders::new(2);
        assert_eq!(
            builders.push_record("1", &csv()),
            Err(RecordError::FieldCount { found: 1 })
        );
        // Counting stops one past the columns: a huge record costs no more fields.
        let mut builders = ColumnBuilders::new(2);
        let long = vec!["x"; 10_000].join("\t");
        assert_eq!(
            builders.push_record(&long, &text()),
            Err(RecordError::FieldCount { found: 3 })
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
