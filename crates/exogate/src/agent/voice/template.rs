//! Instructions and greetings are templates filled from the call: `{from}`, `{to}`, `{call_sid}`,
//! `{custom.NAME}` (the applet's custom parameters and a placed call's variables), or a bare
//! `{NAME}` of one of those. Anything else in braces is left as written: prompts often hold JSON.

use crate::agent::CallInfo;

pub fn fill(template: &str, call: &CallInfo) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = &after[..close];
        match lookup(name, call) {
            Some(value) => out.push_str(&value),
            None => {
                out.push('{');
                out.push_str(name);
                out.push('}');
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

fn lookup(name: &str, call: &CallInfo) -> Option<String> {
    match name {
        // Known fields the call lacks are left empty rather than shown to the model as braces.
        "from" => Some(call.from.clone().unwrap_or_default()),
        "to" => Some(call.to.clone().unwrap_or_default()),
        "call_sid" => Some(call.call_sid.clone().unwrap_or_default()),
        "stream_sid" => Some(call.stream_sid.clone()),
        _ => {
            let key = name.strip_prefix("custom.").or_else(|| name.strip_prefix("vars.")).unwrap_or(name);
            call.custom_parameters.get(key).cloned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_what_it_knows_and_keeps_the_rest() {
        let mut call = CallInfo { from: Some("+919800000001".into()), ..CallInfo::default() };
        call.custom_parameters.insert("name".into(), "Asha".into());
        let t = "Hi {custom.name} ({name}, {vars.name}) from {from}. Answer as {\"ok\": true}. {unknown} {to} {";
        assert_eq!(fill(t, &call), "Hi Asha (Asha, Asha) from +919800000001. Answer as {\"ok\": true}. {unknown}  {");
    }
}
