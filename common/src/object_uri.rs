//! Where a `file://` or `s3://` URI points: the `object_store` that holds it and the path
//! (or pattern) within, with S3 credentials, region and endpoint from a statement's options
//! or the `AWS_*` environment. Shared by the coordinator (COPY FROM) and the data nodes
//! (COPY TO), so both read a URI the same way. It opens stores; it never reads or writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;

use crate::error::{CodedError, ErrorCode};

/// The S3 options a statement may give.
pub const S3_OPTIONS: [&str; 5] = [
    "access_key_id",
    "secret_access_key",
    "session_token",
    "endpoint",
    "region",
];

fn invalid(message: impl Into<String>) -> CodedError {
    CodedError::new(ErrorCode::InvalidParameterValue, message)
}

/// Checks a URI's scheme and form, and that S3 options come only with an `s3://` URI.
pub fn check_uri(uri: &str, s3: &BTreeMap<String, String>) -> Result<(), CodedError> {
    if let Some(path) = uri.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(invalid(format!(
                "a file:// URI needs an absolute path: {uri}"
            )));
        }
        if !s3.is_empty() {
            return Err(invalid("S3 options given for a file:// URI"));
        }
        return Ok(());
    }
    let Some(rest) = uri.strip_prefix("s3://") else {
        return Err(CodedError::new(
            ErrorCode::FeatureNotSupported,
            format!("only file:// and s3:// URIs are supported, not {uri}"),
        ));
    };
    let bucket = rest.split('/').next().unwrap_or_default();
    if bucket.contains('@') {
        return Err(invalid(
            "credentials in an s3:// URI are not accepted (they would show in sys.jobs and in \
             errors): give them as WITH (access_key_id = .., secret_access_key = ..)",
        ));
    }
    if bucket.is_empty() {
        return Err(invalid(format!("no bucket in {uri}")));
    }
    Ok(())
}

/// The store `uri` is in, and the path of the object (or pattern, or directory) within it.
pub fn store_for(
    uri: &str,
    s3: &BTreeMap<String, String>,
) -> Result<(Arc<dyn ObjectStore>, String), CodedError> {
    check_uri(uri, s3)?;
    if let Some(path) = uri.strip_prefix("file://") {
        return Ok((
            Arc::new(LocalFileSystem::new()),
            path.trim_start_matches('/').to_string(),
        ));
    }
    let rest = uri.strip_prefix("s3://").unwrap_or_default();
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    for (option, value) in s3 {
        builder = match option.as_str() {
            "access_key_id" => builder.with_access_key_id(value),
            "secret_access_key" => builder.with_secret_access_key(value),
            "session_token" => builder.with_token(value),
            "region" => builder.with_region(value),
            "endpoint" => builder
                .with_endpoint(value)
                .with_allow_http(value.starts_with("http://"))
                .with_virtual_hosted_style_request(false),
            other => return Err(invalid(format!("unknown S3 option {other}"))),
        };
    }
    let store = builder
        .build()
        .map_err(|e| invalid(format!("cannot use {uri}: {e}")))?;
    Ok((Arc::new(store), key.to_string()))
}

/// An `object_store` error as a coded one: a missing object is 42704, anything else unavailable (58000).
pub fn store_error(what: &str, error: object_store::Error) -> CodedError {
    let code = match error {
        object_store::Error::NotFound { .. } => ErrorCode::UndefinedObject,
        _ => ErrorCode::Unavailable,
    };
    CodedError::new(code, format!("{what}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_checked() {
        let none = BTreeMap::new();
        assert!(check_uri("file:///tmp/x", &none).is_ok());
        assert!(check_uri("file://tmp/x", &none).is_err());
        assert!(check_uri("s3://bucket/key", &none).is_ok());
        assert!(check_uri("s3://k:s@bucket/key", &none).is_err());
        assert!(check_uri("s3:///key", &none).is_err());
        assert_eq!(
            check_uri("http://x/y", &none).unwrap_err().code,
            ErrorCode::FeatureNotSupported
        );
        let s3 = BTreeMap::from([("region".to_string(), "eu".to_string())]);
        assert!(check_uri("file:///tmp/x", &s3).is_err());
    }
}
