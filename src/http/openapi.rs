//! The API description, generated from the handlers' `#[utoipa::path]` attributes and the request
//! and response types, so it cannot drift from the code. This module adds what the types cannot say:
//! the schemas of domain values (which know nothing of OpenAPI), the bearer-token schemes, and the
//! error responses each kind of request can meet.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use herald_domain::{Body, Category, MAX_IDENT_LEN, ReceiverKind, Status, Title};
use utoipa::openapi::schema::{AdditionalProperties, ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, Modify, OpenApi};

use super::error::ErrorBody;

/// The document's frame; `super::api_routes` adds every operation.
#[derive(OpenApi)]
#[openapi(
    info(title = "Herald", description = "A message center: notices to riders and merchants, inboxes, read rates."),
    components(schemas(ErrorBody)),
    modifiers(&BearerTokens)
)]
pub struct ApiDoc;

/// Security scheme names used by `#[utoipa::path(security(...))]`.
pub const ADMIN_TOKEN: &str = "admin_token";
pub const APP_TOKEN: &str = "app_token";

struct BearerTokens;

impl Modify for BearerTokens {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, who) in [(ADMIN_TOKEN, "`herald token admin`"), (APP_TOKEN, "`herald token app`")] {
            let mut scheme = Http::new(HttpAuthScheme::Bearer);
            scheme.description = Some(format!("A token printed by {who}; the scheme is case-insensitive."));
            components.add_security_scheme(name, SecurityScheme::Http(scheme));
        }
    }
}

// Schemas of domain values, for `#[schema(schema_with = ...)]`.

fn text(max: usize, what: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(max))
        .description(Some(format!("{what}: 1 to {max} characters, not blank")))
}

const PLACEHOLDERS: &str = "; placeholders `{{receiver.id}}`, `{{receiver.city}}` and `{{receiver.attr.NAME}}` are \
                            filled in per receiver when an inbox is read (any other `{{…}}` is refused)";

pub fn title() -> Schema {
    text(Title::MAX_CHARS, "A title")
        .description(Some(format!("A title: 1 to {} characters, not blank{PLACEHOLDERS}", Title::MAX_CHARS)))
        .into()
}

pub fn body() -> Schema {
    text(Body::MAX_CHARS, "A body")
        .description(Some(format!(
            "A body: 1 to {} characters of plain text, not blank{PLACEHOLDERS}",
            Body::MAX_CHARS
        )))
        .into()
}

/// Receiver ids, cities and groups.
pub fn ident() -> Schema {
    ident_builder().into()
}

fn ident_builder() -> ObjectBuilder {
    text(MAX_IDENT_LEN, "An identifier of letters (any script), digits, `_ - . :`")
}

/// A receiver's groups.
pub fn groups() -> Schema {
    ArrayBuilder::new().items(ident_builder()).max_items(Some(herald_domain::receiver::MAX_GROUPS_PER_RECEIVER)).into()
}

/// A language tag (`en`, `zh-CN`, `zh-Hant-TW`; `_` is read as `-`).
pub fn locale() -> Schema {
    locale_builder().into()
}

fn locale_builder() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$"))
        .max_length(Some(herald_domain::locale::MAX_LOCALE_LEN))
        .description(Some("A language tag: `en`, `zh-CN`, `zh-Hant-TW`"))
}

/// Title and body per locale: `{"en": {"title": …, "body": …}}`.
pub fn locales() -> Schema {
    let text = ObjectBuilder::new()
        .property("title", title())
        .property("body", body())
        .required("title")
        .required("body")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    ObjectBuilder::new()
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(text.into()))))
        .max_properties(Some(herald_domain::locale::MAX_LOCALES))
        .property_names(Some(locale_builder()))
        .description(Some(
            "Title and body per locale; a receiver reads its locale's, else its language's (`zh` for `zh-TW`), \
             else the untranslated text",
        ))
        .into()
}

/// A variant's groups: one at least.
pub fn variant_groups() -> Schema {
    ArrayBuilder::new()
        .items(ident_builder())
        .min_items(Some(1))
        .max_items(Some(herald_domain::variant::MAX_VARIANT_GROUPS))
        .into()
}

/// A page size: 1 to `max`.
pub fn limit(max: usize) -> Schema {
    ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)).maximum(Some(max as u64)).into()
}

/// The console list's `q`.
pub fn search_text() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(herald_domain::listing::MAX_QUERY_CHARS))
        .description(Some("A substring of the title or body, any script"))
        .into()
}

fn one_of(values: impl IntoIterator<Item = &'static str>) -> Schema {
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(values)).into()
}

pub fn action_kind() -> Schema {
    one_of(["url", "deep_link"])
}

/// A receiver's attributes: names a-z, 0-9, `_` (a letter first), values one line.
pub fn attributes() -> Schema {
    let value =
        ObjectBuilder::new().schema_type(Type::String).max_length(Some(herald_domain::receiver::MAX_ATTRIBUTE_CHARS));
    ObjectBuilder::new()
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(value.into()))))
        .max_properties(Some(herald_domain::receiver::MAX_ATTRIBUTES))
        .property_names(Some(ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[a-z][a-z0-9_]{0,31}$"))))
        .description(Some("Named fields for `{{receiver.attr.NAME}}` placeholders, e.g. `{\"name\": \"小王\"}`"))
        .into()
}

pub fn category() -> Schema {
    one_of(Category::ALL.map(Category::as_str))
}

/// The categories a receiver may opt out of: every one but `system`, each at most once.
pub fn opted_out() -> Schema {
    let optional = Category::ALL.into_iter().filter(|c| *c != Category::System).map(Category::as_str);
    let item = ObjectBuilder::new().schema_type(Type::String).enum_values(Some(optional));
    ArrayBuilder::new().items(item).unique_items(true).into()
}

pub fn status() -> Schema {
    one_of(Status::ALL.map(Status::as_str))
}

pub fn receiver_kind() -> Schema {
    one_of(ReceiverKind::ALL.map(ReceiverKind::as_str))
}

/// `{"all": true}` or any of cities, groups, include, exclude (include alone or with exclude).
pub fn audience() -> Schema {
    let list = || ArrayBuilder::new().items(ident_builder());
    ObjectBuilder::new()
        .property("all", ObjectBuilder::new().schema_type(Type::Boolean))
        .property("cities", list())
        .property("groups", list())
        .property("include", list().max_items(Some(herald_domain::audience::MAX_LIST_LEN)))
        .property("exclude", list().max_items(Some(herald_domain::audience::MAX_LIST_LEN)))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .description(Some("`{\"all\": true}`, or cities and/or groups, or include; exclude subtracts from any"))
        .into()
}

// Error responses, grouped by what a handler does; each handler lists every group it belongs to.

/// The error a status stands for, in the contract's shape.
fn error(status: StatusCode) -> (String, RefOr<Response>) {
    let description = match status {
        StatusCode::BAD_REQUEST => {
            "The request does not decode: `bad_path`, `bad_query` (a parameter given twice, \
                                    named in `field`) or `malformed_json`"
        }
        StatusCode::UNAUTHORIZED => {
            "`unauthorized` (no token, not `Bearer <token>`, a bad signature) or `token_expired`"
        }
        StatusCode::FORBIDDEN => "`forbidden`: the wrong kind of token, or a viewer token on a write",
        StatusCode::NOT_FOUND => "`not_found`: no such notification or message",
        StatusCode::CONFLICT => {
            "`invalid_transition`, `idempotency_key_reused`, or `force_read_unread` (an unread force-read \
                                  message cannot be archived)"
        }
        StatusCode::PAYLOAD_TOO_LARGE => "`body_too_large`: the body is over 4 MiB",
        StatusCode::UNPROCESSABLE_ENTITY => {
            "A value is invalid (`invalid_field`, `unknown_receivers`, \
                                             `batch_too_large`), or a draft's window closed; `field` names it"
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "`unsupported_media_type`: the body is not of the documented type",
        StatusCode::TOO_MANY_REQUESTS => "`too_many_streams`: this token holds as many live-update streams as allowed",
        StatusCode::SERVICE_UNAVAILABLE => "`backend_unavailable`: a store did not answer; retry",
        _ => "An error",
    };
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
    let response = ResponseBuilder::new().description(description).content("application/json", content).build();
    (status.as_str().to_string(), response.into())
}

fn errors(statuses: &[StatusCode]) -> BTreeMap<String, RefOr<Response>> {
    statuses.iter().map(|s| error(*s)).collect()
}

/// Needs a bearer token of one kind (or role).
pub struct NeedsToken;
/// Reads a notification or message id from the path.
pub struct ReadsPath;
/// Reads typed values (a receiver's kind and id) from the path: one that cannot parse is a 422.
pub struct ParsesPath;
/// Reads query parameters.
pub struct ReadsQuery;
/// Reads a JSON body.
pub struct ReadsBody;
/// Changes a notification's status, may meet an earlier request, or archives what must be read.
pub struct Conflicts;
/// Reads or writes a store.
pub struct UsesBackend;
/// Reads a body of one media type only (a CSV).
pub struct ReadsCsv;
/// Opens a live-update stream, a few per token.
pub struct OpensStream;
/// May refuse what a stored notification says now (a draft whose window closed).
pub struct RefusesContent;

impl IntoResponses for NeedsToken {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        errors(&[StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN])
    }
}

impl IntoResponses for ReadsPath {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        errors(&[StatusCode::BAD_REQUEST, StatusCode::NOT_FOUND])
    }
}

impl IntoResponses for ParsesPath {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        errors(&[StatusCode::BAD_REQUEST, StatusCode::NOT_FOUND, StatusCode::UNPROCESSABLE_ENTITY])
    }
}

impl IntoResponses for ReadsQuery {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        errors(&[StatusCode::BAD_REQUEST, StatusCode::UNPROCESSABLE_ENTITY])
    }
}

impl IntoResponses for ReadsBody {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        errors(&[StatusCode::BAD_REQUEST, StatusCode::PAYLOAD_TOO_LARGE, StatusCode::UNPROCESSABLE_ENTITY])
    }
}

impl IntoResponses for Conflicts {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        errors(&[StatusCode::CONFLICT])
    }
}

impl IntoResponses for RefusesContent {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        errors(&[StatusCode::UNPROCESSABLE_ENTITY])
    }
}

impl IntoResponses for UsesBackend {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        errors(&[StatusCode::SERVICE_UNAVAILABLE])
    }
}

impl IntoResponses for OpensStream {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        errors(&[StatusCode::TOO_MANY_REQUESTS])
    }
}

impl IntoResponses for ReadsCsv {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        errors(&[
            StatusCode::BAD_REQUEST,
            StatusCode::PAYLOAD_TOO_LARGE,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            StatusCode::UNPROCESSABLE_ENTITY,
        ])
    }
}
