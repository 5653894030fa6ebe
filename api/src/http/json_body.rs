//! A JSON request payload whose errors name the field at fault.
//!
//! poem-openapi's own `Json<T>` reports type errors without the field path
//! ("failed to parse integer…"). [`JsonBody`] parses with `serde_path_to_error`
//! first, so a client reads `schedules[0].seatPrice: invalid type…`, then runs the
//! poem-openapi validators declared on the type, so the OpenAPI document and the
//! enforcement come from the same attributes.

use std::ops::Deref;

use poem::{Request, RequestBody, Result};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
    error::ContentTypeError,
    payload::{ParsePayload, Payload},
    registry::{MetaMediaType, MetaRequest, MetaSchemaRef, Registry},
    types::{ParseFromJSON, Type},
};
use serde::de::DeserializeOwned;

use crate::http::problem::Problem;

/// Request body limit in bytes, put into request data by the app.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// A JSON request body of type `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T> Deref for JsonBody<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = "application/json";

    fn check_content_type(content_type: &str) -> bool {
        matches!(content_type.parse::<mime::Mime>(), Ok(m) if m.type_() == "application"
            && (m.subtype() == "json" || m.suffix().is_some_and(|s| s == "json")))
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Type + ParseFromJSON + DeserializeOwned> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> Result<Self> {
        Ok(Self(parse(&read_limited(request, body).await?)?))
    }
}

/// Reads the whole body, refusing more than the configured limit (413).
async fn read_limited(request: &Request, body: &mut RequestBody) -> Result<bytes::Bytes, Problem> {
    let limit = request.data::<BodyLimit>().map_or(16 * 1024, |l| l.0);
    body.take()
        .map_err(|e| Problem::invalid("body", format!("could not read the body: {e}")))?
        .into_bytes_limit(limit)
        .await
        .map_err(|e| match e {
            poem::error::ReadBodyError::PayloadTooLarge => Problem::new(
                poem::http::StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("request body exceeds {limit} bytes"),
            )
            .with_field("body"),
            other => Problem::invalid("body", format!("could not read the body: {other}")),
        })
}

/// A JSON body that may be left out: no body (or a blank one) is `None`; a
/// body that is present is parsed and validated exactly like [`JsonBody`].
#[derive(Debug)]
pub struct OptionalJsonBody<T>(pub Option<T>);

impl<'a, T: Type + ParseFromJSON + DeserializeOwned> ApiExtractor<'a> for OptionalJsonBody<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: "application/json",
                schema: T::schema_ref(),
            }],
            required: false,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> Result<Self> {
        let bytes = read_limited(request, body).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(None));
        }
        match request.content_type() {
            Some(ct) if <JsonBody<T> as Payload>::check_content_type(ct) => {
                Ok(Self(Some(parse(&bytes)?)))
            }
            Some(ct) => Err(ContentTypeError::NotSupported {
                content_type: ct.to_owned(),
            }
            .into()),
            None => Err(ContentTypeError::ExpectContentType.into()),
        }
    }
}

/// Parses and validates `bytes` as `T`, naming the offending field on error.
pub fn parse<T: ParseFromJSON + DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Problem::invalid("body", "a JSON body is required"));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Problem::invalid("body", format!("malformed JSON: {e}")))?;
    let typed: T = serde_path_to_error::deserialize(&value).map_err(|e| {
        let field = error_field(&e.path().to_string(), &e.inner().to_string());
        Problem::invalid(field.clone(), format!("{field}: {}", e.inner()))
    })?;
    // The validators (length, range, …) live on the poem-openapi type.
    T::parse_from_json(Some(value)).map_err(|e| {
        let message = e.into_message();
        Problem::invalid(validator_field(&message).unwrap_or("body"), message.clone())
    })?;
    Ok(typed)
}

/// The JSON path of a serde error; a missing field is named by serde only in its message.
fn error_field(path: &str, message: &str) -> String {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match (path, missing) {
        (".", Some(name)) => name.to_owned(),
        (".", None) => "body".to_owned(),
        (path, Some(name)) => format!("{path}.{name}"),
        (path, None) => path.to_owned(),
    }
}

/// poem-openapi reports a validator failure as "field `name` verification failed…".
fn validator_field(message: &str) -> Option<&str> {
    let start = message.find("field `")? + "field `".len();
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

poem_openapi::impl_apirequest_for_payload!(JsonBody<T>, T: Type + ParseFromJSON + DeserializeOwned);

#[cfg(test)]
mod tests {
    use poem_openapi::Object;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Object, Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[oai(rename_all = "camelCase")]
    struct Inner {
        #[oai(validator(minimum(value = "1")))]
        seat_price: i64,
    }

    #[derive(Debug, Object, Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[oai(rename_all = "camelCase")]
    struct Outer {
        #[oai(validator(min_length = 1, max_length = 5))]
        title: String,
        items: Vec<Inner>,
    }

    fn field(bytes: &str) -> Option<String> {
        parse::<Outer>(bytes.as_bytes())
            .expect_err("must fail")
            .body()
            .field
            .clone()
    }

    #[test]
    fn a_good_body_parses() {
        let o: Outer = parse(br#"{"title":"ab","items":[{"seatPrice":3}]}"#).expect("valid");
        assert_eq!((o.title.as_str(), o.items[0].seat_price), ("ab", 3));
    }

    #[test]
    fn type_errors_name_the_nested_field() {
        assert_eq!(
            field(r#"{"title":"ab","items":[{"seatPrice":"x"}]}"#).as_deref(),
            Some("items[0].seatPrice")
        );
        assert_eq!(field(r#"{"title":5,"items":[]}"#).as_deref(), Some("title"));
    }

    #[test]
    fn missing_fields_and_malformed_json_are_reported() {
        assert_eq!(field(r#"{"items":[]}"#).as_deref(), Some("title"));
        assert_eq!(
            field(r#"{"title":"a","items":[{}]}"#).as_deref(),
            Some("items[0].seatPrice")
        );
        assert_eq!(field("{not json").as_deref(), Some("body"));
        assert_eq!(field("").as_deref(), Some("body"));
    }

    #[test]
    fn validator_failures_name_the_field() {
        assert_eq!(
            field(r#"{"title":"toolong","items":[]}"#).as_deref(),
            Some("title")
        );
    }
}
