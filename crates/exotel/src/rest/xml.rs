//! Just enough XML for Exotel's Twilio-style envelopes: the direct children of one element, as text.

use quick_xml::Reader;
use quick_xml::events::Event;

/// The direct children of the first `<parent>` element (local name, case-insensitive), in order, as
/// `(name, text)`. Text is unescaped but not trimmed; grandchildren are skipped. `None` when there is
/// no such element or the XML breaks before it closes.
pub(crate) fn children(xml: &str, parent: &str) -> Option<Vec<(String, String)>> {
    let mut reader = Reader::from_str(xml.trim_start_matches('\u{feff}'));
    // Depth below `parent`: 0 = directly inside it, 1 = inside one of its children, …
    let mut depth: Option<usize> = None;
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    loop {
        match reader.read_event().ok()? {
            Event::Eof => return None,
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                depth = match depth {
                    None => name.eq_ignore_ascii_case(parent).then_some(0),
                    Some(0) => {
                        current = Some((name, String::new()));
                        Some(1)
                    }
                    Some(d) => Some(d + 1),
                };
            }
            Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                match depth {
                    None if name.eq_ignore_ascii_case(parent) => return Some(out),
                    Some(0) => out.push((name, String::new())),
                    _ => {}
                }
            }
            Event::End(_) => {
                depth = match depth {
                    None => None,
                    Some(0) => return Some(out),
                    Some(d) => {
                        if d == 1 {
                            out.extend(current.take());
                        }
                        Some(d - 1)
                    }
                };
            }
            Event::Text(t) if depth == Some(1) => push(&mut current, &t.decode().ok()?),
            Event::CData(t) if depth == Some(1) => push(&mut current, &t.decode().ok()?),
            Event::GeneralRef(r) if depth == Some(1) => {
                let raw = format!("&{};", r.decode().ok()?);
                let resolved = quick_xml::escape::unescape(&raw).map(|c| c.into_owned()).unwrap_or(raw);
                push(&mut current, &resolved);
            }
            _ => {}
        }
    }
}

fn push(current: &mut Option<(String, String)>, s: &str) {
    if let Some((_, text)) = current {
        text.push_str(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_children_only() {
        let x = "<?xml version=\"1.0\"?><R><Call><Sid>a&lt;b&#33;</Sid><Empty/><Nested><Sid>no</Sid>x</Nested><C><![CDATA[1&2]]></C></Call><Call><Sid>second</Sid></Call></R>";
        let c = children(x, "call").unwrap();
        let c: Vec<(&str, &str)> = c.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(c, [("Sid", "a<b!"), ("Empty", ""), ("Nested", "x"), ("C", "1&2")]);
    }

    #[test]
    fn missing_or_broken() {
        assert_eq!(children("<R><Other/></R>", "Call"), None);
        assert_eq!(children("<R><Call><Sid>x</Call></R>", "Call"), None);
        assert_eq!(children("not xml", "Call"), None);
        assert_eq!(children("<R><Call/></R>", "Call"), Some(vec![]));
    }
}
