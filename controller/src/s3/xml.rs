//! The little XML S3 needs, by hand: the text of a tag, the blocks of a repeated element,
//! entity escaping and unescaping. Enough for S3's flat answers; not a general parser.

/// The unescaped text of the first `<name>…</name>` (or `""` for `<name/>`) in `xml`.
pub fn tag(xml: &str, name: &str) -> Option<String> {
    blocks(xml, name).into_iter().next().map(unescape)
}

/// The raw inner text of every `<name>…</name>` (or `<name …/>`) in `xml`, in order.
pub fn blocks<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name}");
    let close = format!("</{name}>");
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(at) = rest.find(&open) {
        let after = &rest[at + open.len()..];
        // `<Key` must not match `<KeyCount`: the name ends at `>`, `/` or whitespace.
        let Some(end_of_open) = after.find('>') else {
            break;
        };
        let attributes = &after[..end_of_open];
        if !(attributes.is_empty()
            || attributes.starts_with('/')
            || attributes.starts_with(char::is_whitespace))
        {
            rest = after;
            continue;
        }
        let body = &after[end_of_open + 1..];
        if attributes.ends_with('/') {
            found.push("");
            rest = body;
            continue;
        }
        let Some(end) = body.find(&close) else {
            break;
        };
        found.push(&body[..end]);
        rest = &body[end + close.len()..];
    }
    found
}

/// Replaces the five predefined entities and numeric references (`&#38;`, `&#x26;`).
/// An unknown or malformed reference is kept as it is.
pub fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let decoded = rest.find(';').and_then(|semi| {
            let entity = &rest[1..semi];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    let code = if let Some(hex) = entity
                        .strip_prefix("#x")
                        .or_else(|| entity.strip_prefix("#X"))
                    {
                        u32::from_str_radix(hex, 16).ok()
                    } else if let Some(dec) = entity.strip_prefix('#') {
                        dec.parse().ok()
                    } else {
                        None
                    };
                    code.and_then(char::from_u32)
                }
            };
            c.map(|c| (c, semi))
        });
        match decoded {
            Some((c, semi)) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Escapes text for an element's content or an attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><KeyCount>2</KeyCount>
<IsTruncated>true</IsTruncated><Contents><Key>a &amp; b.txt</Key><Size>5</Size>
<ETag>&quot;abc&quot;</ETag></Contents><Contents><Key>c&#x3C;d</Key><Size>0</Size></Contents>
<NextContinuationToken>tok&#61;</NextContinuationToken><Prefix/></ListBucketResult>"#;

    #[test]
    fn s3_xml_extracts_tags_and_blocks() {
        assert_eq!(tag(LIST, "KeyCount").as_deref(), Some("2"));
        assert_eq!(tag(LIST, "NextContinuationToken").as_deref(), Some("tok="));
        assert_eq!(tag(LIST, "Prefix").as_deref(), Some(""));
        assert_eq!(tag(LIST, "Missing"), None);
        let contents = blocks(LIST, "Contents");
        assert_eq!(contents.len(), 2);
        assert_eq!(tag(contents[0], "Key").as_deref(), Some("a & b.txt"));
        assert_eq!(tag(contents[0], "ETag").as_deref(), Some("\"abc\""));
        assert_eq!(tag(contents[1], "Key").as_deref(), Some("c<d"));
        assert_eq!(tag(contents[1], "ETag"), None);
    }

    #[test]
    fn s3_xml_escape_round_trips() {
        let text = r#"<a href="x">&'</a> &unknown; &#xZZ; &"#;
        assert_eq!(unescape(&escape(text)), text);
        assert_eq!(
            unescape("&unknown; &#xZZ; & tail"),
            "&unknown; &#xZZ; & tail"
        );
    }
}
