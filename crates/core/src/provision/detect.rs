//! Which built-in profile fits the module on a port, when the user gave none: `ATI` names
//! Quectel and Luat firmware, `AT+GMR` ESP-AT's. The decision is a pure function of what the
//! module answered ([`from_answers`]); [`profile_name`] asks.

use std::time::Duration;

use crate::at::{Command, Engine};
use crate::error::{Code, Failure};

/// The built-in profiles detection can choose, for the "use --profile" line.
pub const CANDIDATES: &[&str] = &["esp32-at", "quectel", "air780ep"];

/// The profile for a module that answered `ATI` with `ati` and `AT+GMR` with `gmr` (info
/// lines; empty when the command failed), and the line that told.
pub fn from_answers(ati: &[String], gmr: &[String]) -> Option<(&'static str, String)> {
    let first =
        |lines: &[String], pred: &dyn Fn(&str) -> bool| lines.iter().find(|l| pred(l)).cloned();
    if let Some(l) = first(ati, &|l| l.trim().eq_ignore_ascii_case("quectel")) {
        let model = ati.iter().skip_while(|x| **x != l).nth(1).cloned();
        return Some(("quectel", model.map_or(l.clone(), |m| format!("{l} {m}"))));
    }
    if let Some(l) = first(ati, &|l| l.starts_with("AirM2M") || l.contains("Air780")) {
        return Some(("air780ep", l));
    }
    if let Some(l) = first(gmr, &|l| l.starts_with("AT version:")) {
        return Some(("esp32-at", l));
    }
    None
}

/// Asks the module on `engine` and names the profile that fits, with what told; a failure
/// names the candidates.
pub async fn profile_name(engine: &Engine) -> Result<(&'static str, String), Failure> {
    let ask = |line: &str| {
        let engine = engine.clone();
        let cmd = Command::new(line.to_string()).timeout(Duration::from_secs(2));
        async move {
            match engine.run(cmd).await {
                Ok(r) if r.is_ok() => Ok(r.info),
                Ok(r) if r.status == crate::at::Status::Reset => Err(Failure::new(
                    Code::ModuleReset,
                    format!(
                        "the module restarted during `{}`; check its power supply, then run the command again",
                        r.command
                    ),
                )),
                Ok(_) => Ok(Vec::new()),
                Err(e) => Err(Failure::from(e)),
            }
        }
    };
    let ati = ask("ATI").await?;
    let gmr = if ati.is_empty() {
        ask("AT+GMR").await?
    } else {
        Vec::new()
    };
    from_answers(&ati, &gmr).ok_or_else(|| {
        Failure::new(
            Code::Usage,
            format!(
                "cannot tell the module's family from ATI and AT+GMR: use --profile NAME ({})",
                CANDIDATES.join(", ")
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &[&str]) -> Vec<String> {
        s.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn each_family_is_told_by_its_own_answer() {
        let quectel = lines(&["Quectel", "BG95-M3", "Revision: BG95M3LAR02A03"]);
        assert_eq!(
            from_answers(&quectel, &[]),
            Some(("quectel", "Quectel BG95-M3".into()))
        );
        let luat = lines(&["AirM2M_780EP_V1007_LTE_AT"]);
        assert_eq!(from_answers(&luat, &[]).unwrap().0, "air780ep");
        let esp = lines(&["AT version:2.2.0.0(c6fa6bf - ESP32 - Jul  2 2021 06:44:05)"]);
        assert_eq!(from_answers(&[], &esp).unwrap().0, "esp32-at");
        assert_eq!(from_answers(&lines(&["SIMCOM_SIM7600"]), &[]), None);
    }
}
