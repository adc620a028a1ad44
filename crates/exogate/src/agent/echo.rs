//! Exotel's classic echo bot: plays the caller's audio back. DTMF `#` clears queued playback
//! (barge-in), `*` hangs up once what is already queued has played, `0` transfers (hangs up so the
//! Passthru after the applet answers 302).

use super::{Agent, CallControl};

pub struct Echo;

impl Agent for Echo {
    fn on_audio(&mut self, pcm: &[u8], ctl: &CallControl) {
        // A caller sending faster than real time fills the queue; what doesn't fit is dropped and
        // counted on the call (`dropped_out_bytes`), never held.
        let _ = ctl.play(pcm);
    }

    fn on_dtmf(&mut self, digit: &str, _duration_ms: Option<u64>, ctl: &CallControl) {
        match digit {
            "#" => ctl.clear(),
            "*" => ctl.hang_up(),
            "0" => ctl.transfer(),
            _ => {}
        }
    }
}
