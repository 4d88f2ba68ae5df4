//! DLLs and the load order of each kind of program.

use super::Vendor;

#[derive(Debug)]
pub(crate) struct Dll {
    pub path: &'static str,
    pub desc: &'static str,
    pub vendor: Vendor,
    /// Size of the mapped image in 4 KiB pages.
    pub pages: u32,
}

macro_rules! dlls {
    ($($id:ident: $path:literal, $desc:literal, $vendor:ident, $pages:literal;)*) => {
        /// Index into [`DLLS`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        #[repr(u16)]
        #[allow(non_camel_case_types)]
        pub(crate) enum DllId { $($id),* }

        pub(crate) static DLLS: &[Dll] = &[$(Dll {
            path: $path,
            desc: $desc,
            vendor: Vendor::$vendor,
            pages: $pages,
        }),*];
    };
}

impl DllId {
    pub(crate) fn get(self) -> &'static Dll {
        &DLLS[self as usize]
    }
}

dlls! {
    ntdll: r"c:\windows\system32\ntdll.dll", "NT Layer DLL", Windows, 494;
    kernel32: r"c:\windows\system32\kernel32.dll", "Windows NT BASE API Client DLL", Windows, 191;
    kernelbase: r"c:\windows\system32\kernelbase.dll", "Windows NT BASE API Client DLL", Windows, 717;
    msvcrt: r"c:\windows\system32\msvcrt.dll", "Windows NT CRT DLL", Windows, 158;
    ucrtbase: r"c:\windows\system32\ucrtbase.dll", "Microsoft\u{ae} C Runtime Library", Windows, 256;
    advapi32: r"c:\windows\system32\advapi32.dll", "Advanced Windows 32 Base API", Windows, 172;
    sechost: r"c:\windows\system32\sechost.dll", "Host for SCM/SDDL/LSA Lookup APIs", Windows, 157;
    rpcrt4: r"c:\windows\system32\rpcrt4.dll", "Remote Procedure Call Runtime", Windows, 279;
    bcrypt: r"c:\windows\system32\bcrypt.dll", "Windows Cryptographic Primitives Library", Windows, 39;
    cryptbase: r"c:\windows\system32\cryptbase.dll", "Base cryptographic API DLL", Windows, 12;
    bcryptprimitives: r"c:\windows\system32\bcryptprimitives.dll", "Windows Cryptographic Primitives Library", Windows, 130;
    user32: r"c:\windows\system32\user32.dll", "Multi-User Windows USER API Client DLL", Windows, 416;
    win32u: r"c:\windows\system32\win32u.dll", "Win32u", Windows, 34;
    gdi32: r"c:\windows\system32\gdi32.dll", "GDI Client DLL", Windows, 43;
    gdi32full: r"c:\windows\system32\gdi32full.dll", "GDI Client DLL", Windows, 276;
    msvcp_win: r"c:\windows\system32\msvcp_win.dll", "Microsoft\u{ae} C Runtime Library", Windows, 157;
    imm32: r"c:\windows\system32\imm32.dll", "Multi-User Windows IMM32 API Client DLL", Windows, 49;
    combase: r"c:\windows\system32\combase.dll", "Microsoft COM for Windows", Windows, 852;
    ole32: r"c:\windows\system32\ole32.dll", "Microsoft OLE for Windows", Windows, 348;
    oleaut32: r"c:\windows\system32\oleaut32.dll", "OLEAUT32.DLL", Windows, 213;
    shell32: r"c:\windows\system32\shell32.dll", "Windows Shell Common Dll", Windows, 1804;
    shlwapi: r"c:\windows\system32\shlwapi.dll", "Shell Light-weight Utility Library", Windows, 85;
    shcore: r"c:\windows\system32\shcore.dll", "SHCORE", Windows, 170;
    windows_storage: r"c:\windows\system32\windows.storage.dll", "Microsoft WinRT Storage API", Windows, 1906;
    uxtheme: r"c:\windows\system32\uxtheme.dll", "Microsoft UxTheme Library", Windows, 166;
    dwmapi: r"c:\windows\system32\dwmapi.dll", "Microsoft Desktop Window Manager API", Windows, 45;
    comctl32: r"c:\windows\winsxs\amd64_microsoft.windows.common-controls_6595b64144ccf1df_6.0.19041.3636_none_60ba9a5b3a4b7c58\comctl32.dll", "User Experience Controls Library", Windows, 632;
    ws2_32: r"c:\windows\system32\ws2_32.dll", "Windows Socket 2.0 32-Bit DLL", Windows, 107;
    mswsock: r"c:\windows\system32\mswsock.dll", "Microsoft Windows Sockets 2.0 Service Provider", Windows, 101;
    dnsapi: r"c:\windows\system32\dnsapi.dll", "DNS Client API DLL", Windows, 206;
    iphlpapi: r"c:\windows\system32\iphlpapi.dll", "IP Helper API", Windows, 51;
    nsi: r"c:\windows\system32\nsi.dll", "NSI User-mode interface DLL", Windows, 8;
    winhttp: r"c:\windows\system32\winhttp.dll", "Windows HTTP Services", Windows, 263;
    wininet: r"c:\windows\system32\wininet.dll", "Internet Extensions for Win32", Windows, 1112;
    crypt32: r"c:\windows\system32\crypt32.dll", "Crypto API32", Windows, 339;
    wintrust: r"c:\windows\system32\wintrust.dll", "Microsoft Trust Verification APIs", Windows, 73;
    msasn1: r"c:\windows\system32\msasn1.dll", "ASN.1 Runtime APIs", Windows, 18;
    sspicli: r"c:\windows\system32\sspicli.dll", "Security Support Provider Interface", Windows, 50;
    profapi: r"c:\windows\system32\profapi.dll", "User Profile Basic API", Windows, 31;
    powrprof: r"c:\windows\system32\powrprof.dll", "Power Profile Helper DLL", Windows, 79;
    kernel_appcore: r"c:\windows\system32\kernel.appcore.dll", "AppModel API Host", Windows, 18;
    version: r"c:\windows\system32\version.dll", "Version Checking and File Installation Libraries", Windows, 10;
    userenv: r"c:\windows\system32\userenv.dll", "Userenv", Windows, 37;
    wldp: r"c:\windows\system32\wldp.dll", "Windows Lockdown Policy", Windows, 50;
    clbcatq: r"c:\windows\system32\clbcatq.dll", "COM+ Configuration Catalog", Windows, 169;
    propsys: r"c:\windows\system32\propsys.dll", "Microsoft Property System", Windows, 246;
    textinputframework: r"c:\windows\system32\textinputframework.dll", "\"TextInputFramework.DYNLINK\"", Windows, 382;
    coremessaging: r"c:\windows\system32\coremessaging.dll", "Microsoft CoreMessaging Dll", Windows, 243;
    wtsapi32: r"c:\windows\system32\wtsapi32.dll", "Windows Remote Desktop Session Host Server SDK APIs", Windows, 18;
    winsta: r"c:\windows\system32\winsta.dll", "Winstation Library", Windows, 85;
    taskschd: r"c:\windows\system32\taskschd.dll", "Task Scheduler COM API", Windows, 173;
    wbemcomn: r"c:\windows\system32\wbemcomn.dll", "WMI", Windows, 121;
    wbemprox: r"c:\windows\system32\wbem\wbemprox.dll", "WMI", Windows, 16;
    fastprox: r"c:\windows\system32\wbem\fastprox.dll", "WMI Custom Marshaller", Windows, 233;
    mpr: r"c:\windows\system32\mpr.dll", "Multiple Provider Router DLL", Windows, 27;
    netapi32: r"c:\windows\system32\netapi32.dll", "Net Win32 API DLL", Windows, 29;
    samcli: r"c:\windows\system32\samcli.dll", "Security Accounts Manager Client DLL", Windows, 21;
    explorerframe: r"c:\windows\system32\explorerframe.dll", "ExplorerFrame", Windows, 816;
    twinui: r"c:\windows\system32\twinui.dll", "TWINUI", Windows, 1740;
    mscoree: r"c:\windows\system32\mscoree.dll", "Microsoft .NET Runtime Execution Engine", Windows, 94;
    mscoreei: r"c:\windows\microsoft.net\framework64\v4.0.30319\mscoreei.dll", "Microsoft .NET Runtime Execution Engine", Windows, 161;
    clr: r"c:\windows\microsoft.net\framework64\v4.0.30319\clr.dll", "Microsoft .NET Runtime Common Language Runtime - WorkStation", Windows, 2656;
    clrjit: r"c:\windows\microsoft.net\framework64\v4.0.30319\clrjit.dll", "Microsoft .NET Runtime Just-In-Time Compiler", Windows, 452;
    mscorlib_ni: r"c:\windows\assembly\nativeimages_v4.0.30319_64\mscorlib\6d3b8e5b9b1e0bd1c2f4a3e9b6c1a2f0\mscorlib.ni.dll", "Microsoft Common Language Runtime Class Library", Windows, 5420;
    sma_ni: r"c:\windows\assembly\nativeimages_v4.0.30319_64\system.manaa57fc8cc#\b1f6c37c3e0c4ba3c1fd5b2ff0d0a9e1\system.management.automation.ni.dll", "System.Management.Automation", Windows, 8390;
    amsi: r"c:\windows\system32\amsi.dll", "Anti-Malware Scan Interface", Windows, 28;
    mpoav: r"c:\programdata\microsoft\windows defender\platform\4.18.23110.3-0\mpoav.dll", "IOfficeAntiVirus Module", Windows, 84;
    chrome_elf: r"c:\program files\google\chrome\application\120.0.6099.130\chrome_elf.dll", "Google Chrome", Google, 442;
    chrome_dll: r"c:\program files\google\chrome\application\120.0.6099.130\chrome.dll", "Google Chrome", Google, 53248;
    libegl: r"c:\program files\google\chrome\application\120.0.6099.130\libegl.dll", "ANGLE libEGL Dynamic Link Library", Google, 120;
    libglesv2: r"c:\program files\google\chrome\application\120.0.6099.130\libglesv2.dll", "ANGLE libGLESv2 Dynamic Link Library", Google, 1932;
    d3d11: r"c:\windows\system32\d3d11.dll", "Direct3D 11 Runtime", Windows, 622;
    dxgi: r"c:\windows\system32\dxgi.dll", "DirectX Graphics Infrastructure", Windows, 190;
    mso20win32client: r"c:\program files\common files\microsoft shared\office16\mso20win32client.dll", "Microsoft Office 2016 component", MsOffice, 1188;
    mso: r"c:\program files\common files\microsoft shared\office16\mso.dll", "Microsoft Office component", MsOffice, 9812;
    wwlib: r"c:\program files\microsoft office\root\office16\wwlib.dll", "Microsoft Word", MsOffice, 18744;
    olmapi32: r"c:\program files\microsoft office\root\office16\olmapi32.dll", "Microsoft Outlook Messaging API", MsOffice, 5124;
    riched20: r"c:\program files\common files\microsoft shared\office16\riched20.dll", "Rich Text Edit Control, v8.5", MsOffice, 736;
    vbe7: r"c:\program files\common files\microsoft shared\vba\vba7.1\vbe7.dll", "Visual Basic for Applications Runtime", MsOffice, 1062;
    acrord_dll: r"c:\program files (x86)\adobe\acrobat reader dc\reader\acrord32.dll", "Adobe Reader", Adobe, 6656;
    vmtools_dll: r"c:\program files\vmware\vmware tools\vmtools.dll", "VMware Tools Core Library", Vmware, 312;
    ntmarta: r"c:\windows\system32\ntmarta.dll", "Windows NT MARTA provider", Windows, 47;
    rsaenh: r"c:\windows\system32\rsaenh.dll", "Microsoft Enhanced Cryptographic Provider", Windows, 52;
    schannel: r"c:\windows\system32\schannel.dll", "TLS / SSL Security Provider", Windows, 149;
    ncrypt: r"c:\windows\system32\ncrypt.dll", "Windows NCrypt Router", Windows, 104;
    edputil: r"c:\windows\system32\edputil.dll", "EDP util", Windows, 102;
    apphelp: r"c:\windows\system32\apphelp.dll", "Application Compatibility Client Library", Windows, 131;
}

/// Ordered DLL lists, from least to most elaborate program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DllSet {
    Kernel,
    Native,
    Base,
    Gui,
    Com,
    Net,
    Shell,
    Dotnet,
    Browser,
    Office,
    VmTools,
}

use DllId as D;

const NATIVE: &[DllId] = &[D::ntdll];
const BASE: &[DllId] = &[
    D::ntdll,
    D::kernel32,
    D::kernelbase,
    D::apphelp,
    D::msvcrt,
    D::ucrtbase,
    D::advapi32,
    D::sechost,
    D::rpcrt4,
    D::bcrypt,
    D::cryptbase,
    D::bcryptprimitives,
    D::sspicli,
    D::kernel_appcore,
    D::version,
];
const GUI: &[DllId] = &[
    D::user32,
    D::win32u,
    D::gdi32,
    D::gdi32full,
    D::msvcp_win,
    D::imm32,
    D::uxtheme,
    D::dwmapi,
    D::comctl32,
    D::textinputframework,
    D::coremessaging,
    D::powrprof,
];
const COM: &[DllId] = &[
    D::combase,
    D::ole32,
    D::oleaut32,
    D::clbcatq,
    D::propsys,
    D::wbemcomn,
    D::taskschd,
    D::wtsapi32,
    D::winsta,
    D::userenv,
    D::profapi,
    D::ntmarta,
];
const NET: &[DllId] = &[
    D::ws2_32,
    D::mswsock,
    D::dnsapi,
    D::iphlpapi,
    D::nsi,
    D::winhttp,
    D::crypt32,
    D::msasn1,
    D::wintrust,
    D::rsaenh,
    D::schannel,
    D::ncrypt,
    D::mpr,
    D::netapi32,
    D::samcli,
];
const SHELL: &[DllId] = &[
    D::shell32,
    D::shlwapi,
    D::shcore,
    D::windows_storage,
    D::explorerframe,
    D::twinui,
    D::edputil,
    D::wldp,
];
const DOTNET: &[DllId] = &[
    D::mscoree,
    D::mscoreei,
    D::clr,
    D::clrjit,
    D::mscorlib_ni,
    D::sma_ni,
    D::amsi,
    D::mpoav,
    D::wbemprox,
    D::fastprox,
];
const BROWSER: &[DllId] = &[
    D::chrome_elf,
    D::chrome_dll,
    D::libegl,
    D::libglesv2,
    D::d3d11,
    D::dxgi,
    D::wininet,
];
const OFFICE: &[DllId] = &[
    D::mso20win32client,
    D::mso,
    D::wwlib,
    D::olmapi32,
    D::riched20,
    D::vbe7,
    D::acrord_dll,
    D::amsi,
    D::mpoav,
];

const VMTOOLS: &[DllId] = &[D::vmtools_dll];

/// The DLLs of `set`, in load order, as layers (base first). A process loads a prefix of the
/// concatenation.
pub(crate) fn dll_set(set: DllSet) -> &'static [&'static [DllId]] {
    match set {
        DllSet::Kernel => &[],
        DllSet::Native => &[NATIVE],
        DllSet::Base => &[BASE],
        DllSet::Gui => &[BASE, GUI],
        DllSet::Com => &[BASE, COM, GUI],
        DllSet::Net => &[BASE, NET, COM, GUI],
        DllSet::Shell => &[BASE, GUI, COM, SHELL, NET],
        DllSet::Dotnet => &[BASE, COM, DOTNET, NET, GUI, SHELL],
        DllSet::Browser => &[BASE, BROWSER, GUI, NET, COM, SHELL],
        DllSet::Office => &[BASE, GUI, COM, SHELL, OFFICE, NET],
        DllSet::VmTools => &[BASE, VMTOOLS, NET, COM, GUI],
    }
}
