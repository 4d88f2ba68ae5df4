//! Static knowledge of a Windows estate: executables and how they spawn each other, DLLs, the
//! files, registry keys and network peers each kind of program touches, and binary metadata for
//! module info messages.
//!
//! Paths are lower case as the sensor reports them. `{u}` in a path or command line is the
//! interactive user's profile name, `{U}` the same as typed by the user (original case); other
//! `{…}` tokens are filled by [`super::text`].

mod activity;
mod dlls;
mod images;

pub(crate) use activity::{DOMAINS, FILES, FileUse, REGS};
pub(crate) use dlls::{DLLS, DllId, DllSet, dll_set};
pub(crate) use images::{BOOT, Boot, IMAGES, Img, SPAWNS, auto_children, os_bit};

/// Windows release of a host; decides file versions, hashes and a few process names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Os {
    Win7,
    Win10,
    Server2016,
}

impl Os {
    pub(crate) fn index(self) -> u64 {
        match self {
            Os::Win7 => 0,
            Os::Win10 => 1,
            Os::Server2016 => 2,
        }
    }

    pub(crate) fn is_server(self) -> bool {
        matches!(self, Os::Server2016)
    }

    /// Windows file version string of an OS binary and its product version.
    pub(crate) fn file_version(self, build_rev: u32) -> (String, String) {
        match self {
            Os::Win7 => {
                let rev = [17514, 18409, 23714, 24000, 24214][build_rev as usize % 5];
                (
                    format!("6.1.7601.{rev} (win7sp1_ldr.{})", ldr_stamp(build_rev)),
                    format!("6.1.7601.{rev}"),
                )
            }
            Os::Win10 => {
                let rev = [1, 1023, 1288, 2006, 3570, 3803][build_rev as usize % 6];
                (
                    format!("10.0.19041.{rev} (WinBuild.160101.0800)"),
                    format!("10.0.19041.{rev}"),
                )
            }
            Os::Server2016 => {
                let rev = [0, 2273, 4046, 5582, 6252][build_rev as usize % 5];
                (
                    format!("10.0.14393.{rev} (rs1_release.{})", ldr_stamp(build_rev)),
                    format!("10.0.14393.{rev}"),
                )
            }
        }
    }
}

fn ldr_stamp(n: u32) -> &'static str {
    [
        "160408-2045",
        "171117-1700",
        "180329-1711",
        "190605-1800",
        "210208-1741",
    ][n as usize % 5]
}

/// Account a process runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Account {
    System,
    LocalService,
    NetworkService,
    /// The interactive user of the session.
    User,
    /// `Window Manager\DWM-<session>`.
    Dwm,
    /// `Font Driver Host\UMFD-<session>`.
    Umfd,
}

/// Who signs a binary, and how its version resource reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Vendor {
    /// Part of Windows: catalog-signed, versioned like the OS.
    Windows,
    MsOffice,
    MsOther,
    Google,
    Mozilla,
    Adobe,
    Vmware,
    Zoom,
    Slack,
    NotepadPlusPlus,
    SevenZip,
    Putty,
    Sysinternals,
    CarbonBlack,
    /// Unsigned tools and droppers; product fields mostly empty.
    Unsigned,
}

impl Vendor {
    /// (company, product name, version, signing publisher, issuer) as found in version resources
    /// and Authenticode signatures. `None` publisher = unsigned.
    pub(crate) fn strings(self) -> VendorStrings {
        let (company, product, version, publisher, issuer) = match self {
            Vendor::Windows => (
                "Microsoft Corporation",
                "Microsoft\u{ae} Windows\u{ae} Operating System",
                "",
                Some("Microsoft Corporation"),
                "Microsoft Windows Production PCA 2011",
            ),
            Vendor::MsOffice => (
                "Microsoft Corporation",
                "Microsoft Office",
                "16.0.17029.20068",
                Some("Microsoft Corporation"),
                "Microsoft Code Signing PCA 2011",
            ),
            Vendor::MsOther => (
                "Microsoft Corporation",
                "Microsoft OneDrive",
                "23.226.1031.0003",
                Some("Microsoft Corporation"),
                "Microsoft Code Signing PCA 2011",
            ),
            Vendor::Google => (
                "Google LLC",
                "Google Chrome",
                "120.0.6099.130",
                Some("Google LLC"),
                "DigiCert Trusted G4 Code Signing RSA4096 SHA384 2021 CA1",
            ),
            Vendor::Mozilla => (
                "Mozilla Corporation",
                "Firefox",
                "121.0.0.8690",
                Some("Mozilla Corporation"),
                "DigiCert SHA2 Assured ID Code Signing CA",
            ),
            Vendor::Adobe => (
                "Adobe Inc.",
                "Adobe Acrobat Reader",
                "23.8.20421.0",
                Some("Adobe Inc."),
                "DigiCert Trusted G4 Code Signing RSA4096 SHA384 2021 CA1",
            ),
            Vendor::Vmware => (
                "VMware, Inc.",
                "VMware Tools",
                "12.3.0.44994",
                Some("VMware, Inc."),
                "DigiCert EV Code Signing CA (SHA2)",
            ),
            Vendor::Zoom => (
                "Zoom Video Communications, Inc.",
                "Zoom",
                "5.16.10.26186",
                Some("Zoom Video Communications, Inc."),
                "DigiCert Trusted G4 Code Signing RSA4096 SHA384 2021 CA1",
            ),
            Vendor::Slack => (
                "Slack Technologies, LLC",
                "Slack",
                "4.35.131.0",
                Some("Slack Technologies, LLC"),
                "DigiCert SHA2 Assured ID Code Signing CA",
            ),
            Vendor::NotepadPlusPlus => (
                "Don HO don.h@free.fr",
                "Notepad++",
                "8.6.0.0",
                Some("Notepad++"),
                "Certum Code Signing 2021 CA",
            ),
            Vendor::SevenZip => ("Igor Pavlov", "7-Zip", "23.01", None, ""),
            Vendor::Putty => (
                "Simon Tatham",
                "PuTTY suite",
                "Release 0.80 (with embedded help)",
                Some("Simon Tatham"),
                "Sectigo Public Code Signing CA R36",
            ),
            Vendor::Sysinternals => (
                "Sysinternals - www.sysinternals.com",
                "Sysinternals Process Explorer",
                "17.05",
                Some("Microsoft Corporation"),
                "Microsoft Code Signing PCA 2011",
            ),
            Vendor::CarbonBlack => (
                "Carbon Black, Inc.",
                "Carbon Black Sensor",
                "7.3.2.18738",
                Some("Carbon Black, Inc."),
                "DigiCert SHA2 Assured ID Code Signing CA",
            ),
            Vendor::Unsigned => ("", "", "1.0.0.0", None, ""),
        };
        VendorStrings {
            company,
            product,
            version,
            publisher,
            issuer,
        }
    }
}

pub(crate) struct VendorStrings {
    pub company: &'static str,
    pub product: &'static str,
    pub version: &'static str,
    pub publisher: Option<&'static str>,
    pub issuer: &'static str,
}

/// What a program does once running: the mix of its activity events and the catalog rows it
/// draws files, keys and peers from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Profile {
    /// Kernel-ish processes: nearly silent.
    Quiet,
    Service,
    Shell,
    Browser,
    Office,
    Mail,
    Console,
    Script,
    Installer,
    Updater,
    Search,
    Security,
    Tool,
    Chat,
}

impl Profile {
    /// Relative weights of non-modload activity: filemod, regmod, netconn, crossproc open,
    /// remote thread.
    pub(crate) fn weights(self) -> [u32; 5] {
        match self {
            Profile::Quiet => [30, 20, 0, 10, 0],
            Profile::Service => [40, 35, 15, 10, 0],
            Profile::Shell => [35, 50, 5, 10, 0],
            Profile::Browser => [60, 15, 22, 3, 0],
            Profile::Office => [55, 38, 5, 2, 0],
            Profile::Mail => [45, 25, 28, 2, 0],
            Profile::Console => [40, 30, 10, 20, 0],
            Profile::Script => [35, 25, 20, 18, 2],
            Profile::Installer => [70, 27, 1, 2, 0],
            Profile::Updater => [45, 30, 24, 1, 0],
            Profile::Search => [70, 20, 0, 10, 0],
            Profile::Security => [55, 15, 10, 20, 0],
            Profile::Tool => [30, 40, 10, 20, 0],
            Profile::Chat => [40, 15, 43, 2, 0],
        }
    }
}

/// Typical lifetime of a process, in simulated seconds (drawn exponentially around it);
/// `None` lives until the end of the window.
pub(crate) type Life = Option<u32>;

impl Profile {
    pub(crate) const COUNT: usize = 14;
}

/// Catalog rows usable by each profile, with their weights, built once.
pub(crate) struct ByProfile {
    pub files: Vec<Vec<(u16, u32)>>,
    pub regs: Vec<Vec<(u16, u32)>>,
    pub domains: Vec<Vec<(u16, u32)>>,
}

pub(crate) fn by_profile() -> &'static ByProfile {
    static CELL: std::sync::OnceLock<ByProfile> = std::sync::OnceLock::new();
    CELL.get_or_init(|| {
        let mut b = ByProfile {
            files: vec![Vec::new(); Profile::COUNT],
            regs: vec![Vec::new(); Profile::COUNT],
            domains: vec![Vec::new(); Profile::COUNT],
        };
        for (i, f) in FILES.iter().enumerate() {
            b.files[f.profile as usize].push((i as u16, u32::from(f.weight)));
        }
        for (i, r) in REGS.iter().enumerate() {
            b.regs[r.profile as usize].push((i as u16, u32::from(r.weight)));
        }
        for (i, d) in DOMAINS.iter().enumerate() {
            b.domains[d.profile as usize].push((i as u16, u32::from(d.weight)));
        }
        b
    })
}
