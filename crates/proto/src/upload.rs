//! XEP-0363: HTTP File Upload — the payloads.
//!
//! The slot request (§4: `filename` and `size` required, `content-type` optional), the slot
//! (a PUT URL with optional headers and a GET URL) and the application errors of §5
//! (`<file-too-large/>` with the limit, `<retry/>` with a stamp).

use xmppd_xml::Element;

use crate::data_form::{DataForm, Field, FieldType, FormType};
use crate::payload::PayloadError;

/// `urn:xmpp:http:upload:0`.
pub const NS: &str = "urn:xmpp:http:upload:0";

/// `<request/>`: a client asks for a slot (§4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The file's name, as the client gave it (the service decides whether it is acceptable).
    pub filename: String,
    /// The size in bytes.
    pub size: u64,
    /// The declared Content-Type, if any.
    pub content_type: Option<String>,
}

impl TryFrom<&Element> for Request {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        if !el.is("request", NS) {
            return Err(PayloadError::Mismatch);
        }
        let filename = el
            .attr("filename")
            .ok_or_else(|| PayloadError::invalid("<request/> needs a 'filename' attribute"))?
            .to_owned();
        let size = el
            .attr("size")
            .ok_or_else(|| PayloadError::invalid("<request/> needs a 'size' attribute"))?;
        let size = size
            .trim()
            .parse::<u64>()
            .map_err(|_| PayloadError::invalid("'size' must be a number of bytes"))?;
        let content_type = el
            .attr("content-type")
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        Ok(Request {
            filename,
            size,
            content_type,
        })
    }
}

impl Request {
    /// The `<request/>` element.
    pub fn to_element(&self) -> Element {
        let el = Element::new("request", NS)
            .with_attr("filename", self.filename.as_str())
            .with_attr("size", self.size.to_string());
        match &self.content_type {
            Some(t) => el.with_attr("content-type", t.as_str()),
            None => el,
        }
    }
}

/// `<slot/>`: where to PUT the file and where it will be fetched from (§4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The PUT URL.
    pub put: String,
    /// Headers the client must send with the PUT (only Authorization, Cookie, Expires).
    pub put_headers: Vec<(String, String)>,
    /// The GET URL.
    pub get: String,
}

impl TryFrom<&Element> for Slot {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        if !el.is("slot", NS) {
            return Err(PayloadError::Mismatch);
        }
        let url = |name: &str| -> Result<(&Element, String), PayloadError> {
            let child = el
                .child(name, NS)
                .ok_or_else(|| PayloadError::invalid(format!("<slot/> needs a <{name}/>")))?;
            let url = child
                .attr("url")
                .ok_or_else(|| PayloadError::invalid(format!("<{name}/> needs a 'url'")))?;
            Ok((child, url.to_owned()))
        };
        let (put_el, put) = url("put")?;
        let (_, get) = url("get")?;
        let put_headers = put_el
            .children()
            .filter(|c| c.is("header", NS))
            .filter_map(|h| Some((h.attr("name")?.to_owned(), h.text())))
            .collect();
        Ok(Slot {
            put,
            put_headers,
            get,
        })
    }
}

impl Slot {
    /// The `<slot/>` element.
    pub fn to_element(&self) -> Element {
        let mut put = Element::new("put", NS).with_attr("url", self.put.as_str());
        for (name, value) in &self.put_headers {
            put.push_child(
                Element::new("header", NS)
                    .with_attr("name", name.as_str())
                    .with_text(value.as_str()),
            );
        }
        Element::new("slot", NS)
            .with_child(put)
            .with_child(Element::new("get", NS).with_attr("url", self.get.as_str()))
    }
}

/// `<file-too-large/>` with the service's limit, the application condition of a
/// `not-acceptable` answer (§5).
pub fn file_too_large(max_file_size: u64) -> Element {
    Element::new("file-too-large", NS)
        .with_child(Element::new("max-file-size", NS).with_text(max_file_size.to_string()))
}

/// The limit a `<file-too-large/>` names, if it is one.
pub fn max_file_size_of(el: &Element) -> Option<u64> {
    if !el.is("file-too-large", NS) {
        return None;
    }
    el.child("max-file-size", NS)?.text().trim().parse().ok()
}

/// `<retry stamp='…'/>`: when a temporary refusal (a quota) may be retried (§5).
pub fn retry(stamp: &str) -> Element {
    Element::new("retry", NS).with_attr("stamp", stamp)
}

/// The XEP-0128 form of the service's disco#info with its `max-file-size` (§2).
pub fn info_form(max_file_size: u64) -> DataForm {
    DataForm::new(FormType::Result)
        .with_field(Field::form_type(NS))
        .with_field(
            Field::new("max-file-size", FieldType::TextSingle)
                .with_value(max_file_size.to_string()),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::element;

    #[test]
    fn request_parses_round_trips_and_ignores_unknown_children() {
        let el = element(&format!(
            "<request xmlns='{NS}' filename='très cool.jpg' size='23456' \
             content-type='image/jpeg'><unknown xmlns='urn:example'/></request>"
        ));
        let request = Request::try_from(&el).expect("a request");
        assert_eq!(request.filename, "très cool.jpg");
        assert_eq!(request.size, 23456);
        assert_eq!(request.content_type.as_deref(), Some("image/jpeg"));
        assert_eq!(Request::try_from(&request.to_element()), Ok(request));
        let bare = element(&format!("<request xmlns='{NS}' filename='a' size='1'/>"));
        assert_eq!(Request::try_from(&bare).expect("ok").content_type, None);
    }

    #[test]
    fn request_needs_filename_and_a_numeric_size() {
        for xml in [
            format!("<request xmlns='{NS}' size='1'/>"),
            format!("<request xmlns='{NS}' filename='a'/>"),
            format!("<request xmlns='{NS}' filename='a' size='-1'/>"),
            format!("<request xmlns='{NS}' filename='a' size='big'/>"),
        ] {
            let err = Request::try_from(&element(&xml)).unwrap_err();
            assert!(matches!(err, PayloadError::Invalid(_)), "{xml}: {err:?}");
        }
        let other = element("<request xmlns='urn:xmpp:http:upload'/>");
        assert!(Request::try_from(&other).unwrap_err().is_mismatch());
    }

    #[test]
    fn slot_round_trips_with_headers() {
        let slot = Slot {
            put: "https://up.example/a/b%20c.jpg?x=1".into(),
            put_headers: vec![("Authorization".into(), "Basic Zm9v".into())],
            get: "https://up.example/a/b%20c.jpg".into(),
        };
        assert_eq!(Slot::try_from(&slot.to_element()), Ok(slot));
        let missing = element(&format!("<slot xmlns='{NS}'><put url='x'/></slot>"));
        assert!(matches!(
            Slot::try_from(&missing),
            Err(PayloadError::Invalid(_))
        ));
    }

    #[test]
    fn file_too_large_carries_the_limit() {
        assert_eq!(max_file_size_of(&file_too_large(20000)), Some(20000));
        assert_eq!(max_file_size_of(&retry("2017-12-03T23:42:05Z")), None);
        let form = info_form(5_242_880);
        assert_eq!(form.form_type(), Some(NS));
        assert_eq!(form.value("max-file-size"), Some("5242880"));
    }
}
