//! Text to array values: PostgreSQL's array literal (`'{a,"b c",NULL,{1,2}}'`, what psycopg's
//! client-side binding and psql users write) and a JSON array (`'["a","b"]'`, what CrateDB's
//! clients may send), parsed into an Arrow list of the target type.
//!
//! This is the one parser for both; writes to array columns (`sql/dml/conform.rs`) and casts
//! of text to an array type in queries (the `creek_text_to_array` function) use it, so they
//! accept and refuse the same text. Elements are converted to the element type by Arrow's
//! strict casts: an element that is not a value of that type is an error, never a NULL.

use std::sync::Arc;

use creek_common::error::ErrorCode;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListArray, StringArray};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::error::{Error, Result};

/// Name of the function a cast of text to an array type is planned as.
pub const TEXT_TO_ARRAY_FUNCTION: &str = "creek_text_to_array";
/// Name of the function `TRY_CAST` of text to an array type is planned as: NULL where the
/// text is no array literal.
pub const TRY_TEXT_TO_ARRAY_FUNCTION: &str = "creek_try_text_to_array";

/// Deepest nesting of braces accepted, far beyond any array type a table can declare.
const MAX_DEPTH: usize = 32;

/// One parsed element: NULL, a scalar's text, or a nested array.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Null,
    Text(String),
    List(Vec<Node>),
}

fn malformed(text: &str, detail: &str) -> Error {
    let shown: String = text.chars().take(200).collect();
    Error::new(
        ErrorCode::InvalidTextRepresentation,
        format!("malformed array literal: \"{shown}\": {detail}"),
    )
}

/// Parses PostgreSQL array-literal text or a JSON array into its element tree.
fn parse(text: &str) -> Result<Node> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        // A JSON array, unless it is a dimension decoration (`[1:2]={...}`).
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(trimmed) {
            if value.is_array() {
                return json_node(&value, 0).ok_or_else(|| malformed(text, "nested too deeply"));
            }
        }
    }
    let mut parser = LiteralParser {
        text,
        chars: text.char_indices().peekable(),
    };
    let dimensions = parser.dimensions()?;
    parser.skip_whitespace();
    let node = parser.list(0)?;
    parser.skip_whitespace();
    if parser.chars.peek().is_some() {
        return Err(malformed(text, "junk after closing right brace"));
    }
    check_dimensions(text, &node, &dimensions)?;
    Ok(node)
}

/// Checks a dimension decoration against the array it describes: Creek's arrays start at 1,
/// and each dimension must have the length the decoration gives.
fn check_dimensions(text: &str, node: &Node, dimensions: &[(i64, i64)]) -> Result<()> {
    let mut level = Some(node);
    for (lower, upper) in dimensions {
        if *lower != 1 {
            return Err(Error::new(
                ErrorCode::FeatureNotSupported,
                format!("array lower bounds other than 1 are not supported: \"{text}\""),
            ));
        }
        let Some(Node::List(items)) = level else {
            return Err(malformed(
                text,
                "specified array dimensions do not match array contents",
            ));
        };
        if i64::try_from(items.len()).ok()
            != upper.checked_sub(*lower).and_then(|n| n.checked_add(1))
        {
            return Err(malformed(
                text,
                "specified array dimensions do not match array contents",
            ));
        }
        level = items.first();
    }
    Ok(())
}

fn json_node(value: &serde_json::Value, depth: usize) -> Option<Node> {
    if depth > MAX_DEPTH {
        return None;
    }
    Some(match value {
        serde_json::Value::Null => Node::Null,
        serde_json::Value::String(text) => Node::Text(text.clone()),
        serde_json::Value::Array(items) => Node::List(
            items
                .iter()
                .map(|item| json_node(item, depth + 1))
                .collect::<Option<_>>()?,
        ),
        other => Node::Text(other.to_string()),
    })
}

struct LiteralParser<'a> {
    text: &'a str,
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
}

impl LiteralParser<'_> {
    fn skip_whitespace(&mut self) {
        while self.chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
    }

    /// Reads an optional dimension decoration (`[1:3][1:2]=`) as (lower, upper) bounds.
    fn dimensions(&mut self) -> Result<Vec<(i64, i64)>> {
        let mut dimensions = Vec::new();
        self.skip_whitespace();
        if self.chars.peek().map(|(_, c)| *c) != Some('[') {
            return Ok(dimensions);
        }
        let bad = || malformed(self.text, "bad array dimension decoration");
        loop {
            self.skip_whitespace();
            match self.chars.next() {
                Some((_, '[')) => {}
                Some((_, '=')) if !dimensions.is_empty() => return Ok(dimensions),
                _ => return Err(bad()),
            }
            let mut bound = String::new();
            let mut lower = None;
            loop {
                match self.chars.next() {
                    Some((_, c)) if c.is_ascii_digit() || c == '-' => bound.push(c),
                    Some((_, ':')) if lower.is_none() => {
                        lower = Some(bound.parse::<i64>().map_err(|_| bad())?);
                        bound.clear();
                    }
                    Some((_, ']')) => break,
                    _ => return Err(bad()),
                }
            }
            let upper = bound.parse::<i64>().map_err(|_| bad())?;
            dimensions.push((lower.unwrap_or(1), upper));
            if dimensions.len() > MAX_DEPTH {
                return Err(bad());
            }
        }
    }

    /// Parses `{...}`, the opening brace next.
    fn list(&mut self, depth: usize) -> Result<Node> {
        if depth > MAX_DEPTH {
            return Err(malformed(self.text, "nested too deeply"));
        }
        match self.chars.next() {
            Some((_, '{')) => {}
            _ => return Err(malformed(self.text, "array value must start with \"{\"")),
        }
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.chars.next_if(|(_, c)| *c == '}').is_some() {
            return Ok(Node::List(items));
        }
        loop {
            self.skip_whitespace();
            let item = match self.chars.peek().map(|(_, c)| *c) {
                Some('{') => self.list(depth + 1)?,
                Some('"') => self.quoted()?,
                Some(',') | Some('}') | None => {
                    return Err(malformed(self.text, "unexpected end of element"))
                }
                Some(_) => self.unquoted()?,
            };
            items.push(item);
            self.skip_whitespace();
            match self.chars.next() {
                Some((_, ',')) => continue,
                Some((_, '}')) => return Ok(Node::List(items)),
                _ => return Err(malformed(self.text, "unexpected end of input")),
            }
        }
    }

    fn quoted(&mut self) -> Result<Node> {
        self.chars.next();
        let mut value = String::new();
        loop {
            match self.chars.next() {
                Some((_, '"')) => return Ok(Node::Text(value)),
                Some((_, '\\')) => match self.chars.next() {
                    Some((_, c)) => value.push(c),
                    None => break,
                },
                Some((_, c)) => value.push(c),
                None => break,
            }
        }
        Err(malformed(self.text, "unterminated quoted element"))
    }

    fn unquoted(&mut self) -> Result<Node> {
        let mut value = String::new();
        // Whitespace inside an element is kept, around it dropped; escaped whitespace is kept.
        let mut kept_len = 0;
        let mut escaped_any = false;
        while let Some((_, c)) = self.chars.peek().copied() {
            match c {
                ',' | '}' => break,
                '{' | '"' => return Err(malformed(self.text, "unexpected character")),
                '\\' => {
                    self.chars.next();
                    let Some((_, escaped)) = self.chars.next() else {
                        return Err(malformed(self.text, "unexpected end of input"));
                    };
                    value.push(escaped);
                    kept_len = value.len();
                    escaped_any = true;
                }
                _ => {
                    self.chars.next();
                    value.push(c);
                    if !c.is_whitespace() {
                        kept_len = value.len();
                    }
                }
            }
        }
        value.truncate(kept_len);
        if !escaped_any && value.eq_ignore_ascii_case("null") {
            return Ok(Node::Null);
        }
        Ok(Node::Text(value))
    }
}

const STRICT: CastOptions<'static> = CastOptions {
    safe: false,
    format_options: datafusion::arrow::util::display::FormatOptions::new(),
};

/// Builds an array of `data_type` from parsed nodes (`None` is SQL NULL).
fn dimension_mismatch() -> Error {
    Error::new(
        ErrorCode::InvalidTextRepresentation,
        "malformed array literal: wrong number of array dimensions for the array type",
    )
}

fn build(nodes: &[Option<&Node>], data_type: &DataType) -> Result<ArrayRef> {
    if let DataType::List(field) = data_type {
        let mut lengths = Vec::with_capacity(nodes.len());
        let mut valid = Vec::with_capacity(nodes.len());
        let mut children: Vec<Option<&Node>> = Vec::new();
        for node in nodes {
            match node {
                None | Some(Node::Null) => {
                    lengths.push(0);
                    valid.push(false);
                }
                Some(Node::List(items)) => {
                    lengths.push(items.len());
                    valid.push(true);
                    children.extend(items.iter().map(Some));
                }
                Some(Node::Text(_)) => return Err(dimension_mismatch()),
            }
        }
        let values = build(&children, field.data_type())?;
        let list = ListArray::try_new(
            field.clone(),
            OffsetBuffer::from_lengths(lengths),
            values,
            Some(NullBuffer::from(valid)),
        )?;
        return Ok(Arc::new(list));
    }
    let mut texts = Vec::with_capacity(nodes.len());
    for node in nodes {
        texts.push(match node {
            None | Some(Node::Null) => None,
            Some(Node::Text(text)) => Some(text.as_str()),
            Some(Node::List(_)) => return Err(dimension_mismatch()),
        });
    }
    let strings: ArrayRef = Arc::new(StringArray::from(texts));
    if data_type == &DataType::Utf8 {
        return Ok(strings);
    }
    cast_with_options(&strings, data_type, &STRICT).map_err(|error| {
        Error::new(
            ErrorCode::InvalidTextRepresentation,
            format!(
                "invalid array element for type {data_type}: {}",
                creek_common::error::strip_prefix(&error.to_string())
            ),
        )
    })
}

/// Parses each string of `strings` (a NULL stays NULL) as an array of `list_type`.
pub fn text_to_list_array(strings: &StringArray, list_type: &DataType) -> Result<ArrayRef> {
    if !matches!(list_type, DataType::List(_)) {
        return Err(Error::new(
            ErrorCode::Internal,
            format!("text_to_list_array needs a list type, got {list_type}"),
        ));
    }
    let mut trees = Vec::with_capacity(strings.len());
    for index in 0..strings.len() {
        trees.push(if strings.is_null(index) {
            None
        } else {
            Some(parse(strings.value(index))?)
        });
    }
    let nodes: Vec<Option<&Node>> = trees.iter().map(Option::as_ref).collect();
    build(&nodes, list_type)
}

/// `creek_text_to_array(value, CAST(NULL AS t[]))`: `value` as an array of the second
/// argument's type — text parsed as an array literal, a list cast element by element.
#[derive(Debug, PartialEq, Eq, Hash)]
struct TextToArray {
    signature: Signature,
    /// NULL instead of an error for text that is no array literal (`TRY_CAST`).
    lenient: bool,
}

/// Like [`text_to_list_array`], but a string that does not parse becomes NULL.
fn text_to_list_array_or_null(strings: &StringArray, list_type: &DataType) -> Result<ArrayRef> {
    let mut rows = Vec::with_capacity(strings.len());
    for index in 0..strings.len() {
        let one = strings.slice(index, 1);
        rows.push(match text_to_list_array(&one, list_type) {
            Ok(array) => array,
            Err(_) => datafusion::arrow::array::new_null_array(list_type, 1),
        });
    }
    let refs: Vec<&dyn Array> = rows.iter().map(|a| a.as_ref()).collect();
    if refs.is_empty() {
        return Ok(datafusion::arrow::array::new_empty_array(list_type));
    }
    Ok(datafusion::arrow::compute::concat(&refs)?)
}

impl ScalarUDFImpl for TextToArray {
    fn name(&self) -> &str {
        if self.lenient {
            TRY_TEXT_TO_ARRAY_FUNCTION
        } else {
            TEXT_TO_ARRAY_FUNCTION
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        match arg_types {
            [_, target @ DataType::List(_)] => Ok(target.clone()),
            _ => exec_err!("{TEXT_TO_ARRAY_FUNCTION} takes a value and a typed NULL array"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let target = args.return_field.data_type().clone();
        let rows = args.number_rows;
        let [value, _] = args.args.as_slice() else {
            return exec_err!("{TEXT_TO_ARRAY_FUNCTION} takes two arguments");
        };
        let scalar = matches!(value, ColumnarValue::Scalar(_));
        let input = value.to_array(if scalar { 1 } else { rows })?;
        let parse = |strings: &StringArray| {
            if self.lenient {
                text_to_list_array_or_null(strings, &target)
            } else {
                text_to_list_array(strings, &target)
            }
            .map_err(|error| error.into_datafusion())
        };
        let output = match input.data_type() {
            DataType::Utf8 => parse(input.as_string::<i32>())?,
            DataType::LargeUtf8 | DataType::Utf8View => {
                let strings = cast_with_options(&input, &DataType::Utf8, &STRICT)?;
                parse(strings.as_string::<i32>())?
            }
            _ if self.lenient => datafusion::arrow::compute::cast(&input, &target)?,
            _ => cast_with_options(&input, &target, &STRICT)?,
        };
        if scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &output, 0,
            )?))
        } else {
            Ok(ColumnarValue::Array(output))
        }
    }
}

/// Returns the `creek_text_to_array` function.
pub fn text_to_array_function() -> ScalarUDF {
    ScalarUDF::new_from_impl(TextToArray {
        signature: Signature::any(2, Volatility::Immutable),
        lenient: false,
    })
}

/// Returns the `creek_try_text_to_array` function.
pub fn try_text_to_array_function() -> ScalarUDF {
    ScalarUDF::new_from_impl(TextToArray {
        signature: Signature::any(2, Volatility::Immutable),
        lenient: true,
    })
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::Field;

    use super::*;

    fn list_of(data_type: DataType) -> DataType {
        DataType::List(Arc::new(Field::new("item", data_type, true)))
    }

    fn parse_texts(text: &str, data_type: DataType) -> Result<Vec<Option<String>>> {
        let array = text_to_list_array(&StringArray::from(vec![text]), &list_of(data_type))?;
        let list = array.as_list::<i32>().value(0);
        let strings = cast_with_options(&list, &DataType::Utf8, &STRICT)?;
        let strings = strings.as_string::<i32>();
        Ok((0..strings.len())
            .map(|i| strings.is_valid(i).then(|| strings.value(i).to_string()))
            .collect())
    }

    fn some(values: &[&str]) -> Vec<Option<String>> {
        values.iter().map(|v| Some(v.to_string())).collect()
    }

    #[test]
    fn postgresql_literals_parse() {
        assert_eq!(
            parse_texts("{a,b}", DataType::Utf8).unwrap(),
            some(&["a", "b"])
        );
        assert_eq!(
            parse_texts(r#"{"a,b","c\"d", e f ,"NULL",NULL}"#, DataType::Utf8).unwrap(),
            vec![
                Some("a,b".into()),
                Some("c\"d".into()),
                Some("e f".into()),
                Some("NULL".into()),
                None
            ]
        );
        assert_eq!(
            parse_texts(r"{a\,b,\ x}", DataType::Utf8).unwrap(),
            some(&["a,b", " x"])
        );
        assert_eq!(parse_texts("{}", DataType::Utf8).unwrap(), some(&[]));
        assert_eq!(
            parse_texts(" { 1 , 2 } ", DataType::Int64).unwrap(),
            some(&["1", "2"])
        );
        assert_eq!(
            parse_texts("[1:2]={3,4}", DataType::Int32).unwrap(),
            some(&["3", "4"])
        );
        assert_eq!(
            parse_texts(r#"["x", null, "y"]"#, DataType::Utf8).unwrap(),
            vec![Some("x".into()), None, Some("y".into())]
        );
    }

    #[test]
    fn nested_braces_make_nested_lists() {
        let target = list_of(list_of(DataType::Int64));
        let array = text_to_list_array(&StringArray::from(vec!["{{1,2},{3}}"]), &target).unwrap();
        let outer = array.as_list::<i32>().value(0);
        assert_eq!(outer.len(), 2);
        assert_eq!(outer.as_list::<i32>().value(1).len(), 1);
    }

    #[test]
    fn malformed_literals_are_errors() {
        for text in ["{a,b", "a,b", "{a}x", "{{a},b}", "{\"a}", "{,}", "{a,}"] {
            let error = parse_texts(text, DataType::Utf8).unwrap_err();
            assert_eq!(error.code(), ErrorCode::InvalidTextRepresentation, "{text}");
        }
        assert!(parse_texts("{1,x}", DataType::Int64).is_err());
        assert!(parse_texts("[1:3]={1,2}", DataType::Int64).is_err());
        let rebased = parse_texts("[0:1]={1,2}", DataType::Int64).unwrap_err();
        assert_eq!(rebased.code(), ErrorCode::FeatureNotSupported);
        let deep = "{".repeat(100) + &"}".repeat(100);
        assert!(parse_texts(&deep, DataType::Utf8).is_err());
    }
}
