//! Binaries as a host has them on disk: path, hashes, version resource and signature, for
//! module info messages (`CbModuleInfoMsg`) and the server's binary notifications.

use super::catalog::{DLLS, DllId, IMAGES, Img, Os, Vendor};
use super::clock::sign_time;
use super::host::{Host, SensorGen};
use super::process::{Bin, binary_hashes};
use super::text::{base64_into, hex};
use crate::proto::CbModuleInfoMsg;
use std::sync::Arc;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// A binary of the catalog: an executable or a DLL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum BinRef {
    Image(Img),
    Dll(DllId),
    /// The 32-bit copy of a system DLL (`syswow64`) a WOW64 process loads.
    Wow64(DllId),
}

impl BinRef {
    /// Dense index over images then DLLs.
    pub(crate) fn key(self) -> usize {
        match self {
            BinRef::Image(i) => i as usize,
            BinRef::Dll(d) => IMAGES.len() + d as usize,
            BinRef::Wow64(d) => IMAGES.len() + DLLS.len() + d as usize,
        }
    }

    /// Path template: `{u}` for the user's profile folder.
    fn template(self) -> std::borrow::Cow<'static, str> {
        match self {
            BinRef::Image(i) => i.get().path.into(),
            BinRef::Dll(d) => d.get().path.into(),
            BinRef::Wow64(d) => wow64_path(d.get().path).into(),
        }
    }

    fn vendor(self) -> Vendor {
        match self {
            BinRef::Image(i) => i.get().vendor,
            BinRef::Dll(d) | BinRef::Wow64(d) => d.get().vendor,
        }
    }

    fn desc(self) -> &'static str {
        match self {
            BinRef::Image(i) => i.get().desc,
            BinRef::Dll(d) | BinRef::Wow64(d) => d.get().desc,
        }
    }

    fn is_exe(self) -> bool {
        matches!(self, BinRef::Image(_))
    }
}

/// The binaries one host has resolved so far.
#[derive(Debug, Default)]
pub(crate) struct Bins {
    cache: Vec<Option<Bin>>,
}

impl Bins {
    pub(crate) fn get(&mut self, host: &Host, r: BinRef) -> Bin {
        let k = r.key();
        if self.cache.len() <= k {
            self.cache.resize(k + 1, None);
        }
        if let Some(b) = &self.cache[k] {
            return b.clone();
        }
        let b = resolve(host, r);
        self.cache[k] = Some(b.clone());
        b
    }
}

/// Hash scope of a binary: Windows files differ per release, third-party files do not.
fn scope(os: Os, vendor: Vendor) -> u64 {
    if vendor == Vendor::Windows {
        1 + os.index()
    } else {
        0
    }
}

/// Where WOW64 redirects a 32-bit process's `system32` load.
pub(crate) fn wow64_path(system32: &str) -> String {
    system32.replacen(r"\system32\", r"\syswow64\", 1)
}

fn resolve(host: &Host, r: BinRef) -> Bin {
    let tpl = r.template();
    let path = tpl.replace("{u}", &host.user.folder);
    // Hash the template, not the filled path: every user's copy of an app is the same file.
    let (md5, sha256) = binary_hashes(scope(host.os, r.vendor()), &tpl);
    Bin {
        path: Arc::from(path),
        md5,
        sha256,
    }
}

fn h(bin: &Bin, salt: u64) -> u64 {
    xxh3_64_with_seed(&bin.md5, salt)
}

/// File size of a binary, stable for its hash.
pub(crate) fn file_size(r: BinRef, bin: &Bin) -> u64 {
    match r {
        BinRef::Dll(d) | BinRef::Wow64(d) => u64::from(d.get().pages) * 4096 - h(bin, 1) % 3000,
        BinRef::Image(_) => 40_960 + h(bin, 1) % 4_000_000,
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('\\').next().unwrap_or(path)
}

fn x64(r: BinRef, path: &str) -> bool {
    match r {
        BinRef::Image(i) => i.get().x64,
        BinRef::Dll(_) | BinRef::Wow64(_) => !(path.contains("(x86)") || path.contains("syswow64")),
    }
}

/// Version and signature strings of a binary on a host.
pub(crate) struct Meta {
    pub desc: &'static str,
    pub company: &'static str,
    pub product: &'static str,
    pub file_version: String,
    pub product_version: String,
    pub copyright: &'static str,
    pub original_name: String,
    pub publisher: Option<&'static str>,
    /// Embedded Authenticode signature as (program, issuer, subject); `None` when
    /// catalog-signed or unsigned.
    pub embedded_sig: Option<(&'static str, &'static str, &'static str)>,
    pub sign_ms: i64,
    pub size: u64,
    pub x64: bool,
    pub exe: bool,
}

pub(crate) fn meta(host: &Host, r: BinRef, bin: &Bin, now_ms: i64) -> Meta {
    let v = r.vendor().strings();
    let (file_version, product_version) = if r.vendor() == Vendor::Windows {
        host.os.file_version((h(bin, 2) % 97) as u32)
    } else {
        (v.version.to_string(), v.version.to_string())
    };
    let product = if r.vendor() == Vendor::Windows && host.os == Os::Win7 {
        "Microsoft\u{ae} Windows\u{ae} Operating System"
    } else {
        v.product
    };
    let copyright = match r.vendor() {
        Vendor::Windows | Vendor::MsOffice | Vendor::MsOther | Vendor::Sysinternals => {
            "\u{a9} Microsoft Corporation. All rights reserved."
        }
        Vendor::Google => "Copyright 2023 Google LLC. All rights reserved.",
        Vendor::Unsigned => "",
        _ => "Copyright (C) 2023",
    };
    let embedded = v
        .publisher
        .filter(|_| r.vendor() != Vendor::Windows || r.is_exe() || h(bin, 3).is_multiple_of(3));
    let name = file_name(&bin.path).to_string();
    Meta {
        desc: r.desc(),
        company: v.company,
        product,
        file_version,
        product_version,
        copyright,
        original_name: name,
        publisher: v.publisher,
        embedded_sig: embedded.map(|publisher| {
            if r.vendor() == Vendor::Windows {
                ("Microsoft Windows", v.issuer, "Microsoft Windows")
            } else {
                (product, v.issuer, publisher)
            }
        }),
        // Signed some weeks to a few years before it turns up.
        sign_ms: now_ms
            - (30 + (h(bin, 4) % 900) as i64) * 86_400_000
            - (h(bin, 5) % 86_400) as i64 * 1000,
        size: file_size(r, bin),
        x64: x64(r, &bin.path),
        exe: r.is_exe(),
    }
}

/// The 20-byte `IMAGE_FILE_HEADER` the sensor copies into module info.
fn image_file_header(m: &Meta, bin: &Bin) -> Vec<u8> {
    let machine: u16 = if m.x64 { 0x8664 } else { 0x014c };
    let sections = 4 + (h(bin, 6) % 5) as u16;
    let stamp = (m.sign_ms / 1000 - 3 * 86_400) as u32;
    let opt_size: u16 = if m.x64 { 0xF0 } else { 0xE0 };
    let characteristics: u16 = match (m.exe, m.x64) {
        (true, true) => 0x0022,
        (true, false) => 0x0102,
        (false, true) => 0x2022,
        (false, false) => 0x2102,
    };
    let mut out = Vec::with_capacity(20);
    out.extend_from_slice(&machine.to_le_bytes());
    out.extend_from_slice(&sections.to_le_bytes());
    out.extend_from_slice(&stamp.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&opt_size.to_le_bytes());
    out.extend_from_slice(&characteristics.to_le_bytes());
    out
}

/// A small PNG of the program's icon, base64 as the sensor sends it.
fn icon(bin: &Bin) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&32u32.to_be_bytes());
    ihdr.extend_from_slice(&32u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    let mut idat = Vec::with_capacity(160);
    let mut x = h(bin, 7);
    for _ in 0..20 {
        x = x
            .wrapping_mul(0x5851_F42D_4C95_7F2D)
            .wrapping_add(0x1405_7B7E_F767_814F);
        idat.extend_from_slice(&x.to_le_bytes());
    }
    chunk(&mut png, b"IDAT", &idat);
    chunk(&mut png, b"IEND", &[]);
    let mut s = String::with_capacity(png.len() * 4 / 3 + 4);
    base64_into(&png, &mut s);
    s.into_bytes()
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Module info for `bin`, shaped like the captured `ingress.event.module` messages.
pub(crate) fn module_info(host: &Host, r: BinRef, bin: &Bin, now_ms: i64) -> CbModuleInfoMsg {
    let m = meta(host, r, bin, now_ms);
    let size = m.size;
    let signed = m.publisher.is_some();
    let mut info = CbModuleInfoMsg {
        md5: Some(hex(&bin.md5, true).into_bytes()),
        // Files above the upload limit are described but not copied.
        copied_module_length: Some(if size > 25 * 1024 * 1024 {
            0
        } else {
            size as u32
        }),
        original_module_length: Some(size),
        utf8_file_description: Some(m.desc.to_string()),
        utf8_company_name: Some(m.company.to_string()),
        utf8_product_name: Some(m.product.to_string()),
        utf8_file_version: Some(m.file_version.clone()),
        utf8_legal_copyright: Some(m.copyright.to_string()),
        utf8_internal_name: Some(m.original_name.clone()),
        utf8_original_file_name: Some(m.original_name.clone()),
        utf8_product_version: Some(m.product_version.clone()),
        utf8_dig_sig_result: Some(if signed { "Signed" } else { "Unsigned" }.to_string()),
        utf8_dig_sig_result_code: Some(
            if signed { "0x00000000" } else { "0x800b0100" }.to_string(),
        ),
        image_file_header: Some(image_file_header(&m, bin)),
        utf8_on_disk_filename: Some(bin.path.to_string()),
        ..CbModuleInfoMsg::default()
    };
    if let Some(publisher) = m.publisher {
        info.utf8_dig_sig_publisher = Some(publisher.to_string());
        info.utf8_dig_sig_sign_time = Some(sign_time(m.sign_ms));
    }
    if let Some((program, issuer, subject)) = m.embedded_sig {
        info.utf8_dig_sig_program_name = Some(program.to_string());
        info.utf8_dig_sig_issuer_name = Some(issuer.to_string());
        info.utf8_dig_sig_subject_name = Some(subject.to_string());
    }
    if h(bin, 8).is_multiple_of(8) {
        info.utf8_comments = Some(if m.exe { "Flavor=Retail" } else { m.desc }.to_string());
    }
    if h(bin, 9).is_multiple_of(12) {
        info.utf8_private_build = Some(format!("DDBLD{}", 100 + h(bin, 10) % 300));
    }
    if m.exe && matches!(r, BinRef::Image(i) if i.get().account == super::catalog::Account::User) {
        info.icon = Some(icon(bin));
    }
    if host.sensor == SensorGen::Modern {
        info.sha256 = Some(hex(&bin.sha256, true).into_bytes());
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_and_header() {
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
        let host = Host::new(1, 0, 1_709_539_200_000, 3600, 0.0, false);
        let mut bins = Bins::default();
        let r = BinRef::Dll(DllId::ntdll);
        let bin = bins.get(&host, r);
        let info = module_info(&host, r, &bin, 1_709_539_200_000);
        let md5 = String::from_utf8(info.md5.unwrap()).unwrap();
        assert_eq!(md5, hex(&bin.md5, true));
        assert_eq!(info.image_file_header.unwrap().len(), 20);
        assert!(info.sha256.is_none(), "legacy sensors send no sha256");
    }
}
