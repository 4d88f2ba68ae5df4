//! What programs touch: files, registry keys and network peers, by [`Profile`].
//!
//! Tokens: `{u}` profile name, `{sid}` the user's SID in lower case, `{hex4}`/`{hex8}`/`{hex16}`
//! random hex, `{num}` a number, `{guid}` a braced GUID, `{doc}` a document stem, `{rot13}` a
//! UserAssist entry, `{exe}` the acting program's file name.

use super::Profile::{self, *};
use crate::proto::cb_file_mod_msg::CbFileType;

/// How a program uses a file; decides the burst of filemod actions it produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileUse {
    /// Created, written, deleted within milliseconds.
    Temp,
    /// Appended to (a log, a database).
    Append,
    /// Created or overwritten, then closed: the last write carries the type and hash.
    Written(CbFileType),
    /// Deleted.
    Delete,
}

#[derive(Debug)]
pub(crate) struct FileTpl {
    pub profile: Profile,
    pub path: &'static str,
    pub usage: FileUse,
    pub weight: u16,
}

const fn f(profile: Profile, path: &'static str, usage: FileUse, weight: u16) -> FileTpl {
    FileTpl {
        profile,
        path,
        usage,
        weight,
    }
}

use CbFileType as T;
use FileUse::{Append as A, Delete as D, Temp as TMP, Written as W};

pub(crate) static FILES: &[FileTpl] = &[
    f(
        Quiet,
        r"c:\windows\system32\config\systemprofile\appdata\local\temp\{hex8}.tmp",
        TMP,
        5,
    ),
    f(
        Quiet,
        r"c:\windows\system32\logfiles\wmi\rtbackup\etwrtdiagtrack-listener.etl",
        A,
        3,
    ),
    f(Service, r"c:\windows\system32\sru\sru.log", A, 10),
    f(Service, r"c:\windows\system32\sru\sru{hex4}.log", TMP, 4),
    f(
        Service,
        r"c:\windows\serviceprofiles\localservice\appdata\local\lastalive0.dat",
        A,
        6,
    ),
    f(
        Service,
        r"c:\windows\serviceprofiles\localservice\appdata\local\lastalive1.dat",
        A,
        6,
    ),
    f(
        Service,
        r"c:\windows\system32\wdi\logfiles\bootckcl.etl",
        A,
        2,
    ),
    f(
        Service,
        r"c:\windows\softwaredistribution\datastore\logs\edb.log",
        A,
        4,
    ),
    f(Service, r"c:\windows\temp\{hex8}.tmp", TMP, 5),
    f(
        Service,
        r"c:\programdata\microsoft\windows\wer\temp\{hex8}.tmp.xml",
        TMP,
        2,
    ),
    f(
        Service,
        r"c:\windows\prefetch\{exe}-{hex8}.pf",
        W(T::FiletypeUnknown),
        6,
    ),
    f(
        Service,
        r"c:\programdata\microsoft\diagnosis\etllogs\autologger\autologger-diagtrack-listener.etl",
        A,
        3,
    ),
    f(
        Shell,
        r"c:\users\{u}\appdata\roaming\microsoft\windows\recent\{doc}.lnk",
        W(T::FiletypeMsLnk),
        8,
    ),
    f(
        Shell,
        r"c:\users\{u}\appdata\local\microsoft\windows\explorer\iconcache_{num}.db",
        A,
        4,
    ),
    f(
        Shell,
        r"c:\users\{u}\appdata\local\microsoft\windows\explorer\thumbcache_{num}.db",
        A,
        4,
    ),
    f(
        Shell,
        r"c:\users\{u}\appdata\roaming\microsoft\windows\recent\automaticdestinations\{hex16}.automaticdestinations-ms",
        W(T::FiletypeUnknown),
        5,
    ),
    f(
        Shell,
        r"c:\users\{u}\desktop\{doc}.lnk",
        W(T::FiletypeMsLnk),
        1,
    ),
    f(Shell, r"c:\users\{u}\downloads\{doc}.zip", D, 1),
    f(
        Browser,
        r"c:\users\{u}\appdata\local\google\chrome\user data\default\{hex4}.tmp",
        TMP,
        12,
    ),
    f(
        Browser,
        r"c:\users\{u}\appdata\local\google\chrome\user data\default\cache\cache_data\f_{hex4}",
        W(T::FiletypeUnknown),
        18,
    ),
    f(
        Browser,
        r"c:\users\{u}\appdata\local\google\chrome\user data\default\history-journal",
        TMP,
        8,
    ),
    f(
        Browser,
        r"c:\users\{u}\appdata\local\google\chrome\user data\default\cookies-journal",
        TMP,
        8,
    ),
    f(
        Browser,
        r"c:\users\{u}\appdata\local\google\chrome\user data\default\current session",
        A,
        6,
    ),
    f(
        Browser,
        r"c:\users\{u}\appdata\local\google\chrome\user data\default\network\network persistent state~rf{hex4}.tmp",
        TMP,
        4,
    ),
    f(
        Browser,
        r"c:\users\{u}\appdata\local\google\chrome\user data\safe browsing\uws list",
        A,
        2,
    ),
    f(
        Browser,
        r"c:\users\{u}\downloads\{doc}.pdf",
        W(T::FiletypePdf),
        2,
    ),
    f(
        Browser,
        r"c:\users\{u}\downloads\{doc}.zip",
        W(T::FiletypeArchivePkzip),
        2,
    ),
    f(Browser, r"c:\users\{u}\downloads\{doc}.crdownload", TMP, 2),
    f(
        Browser,
        r"c:\users\{u}\downloads\setup_{hex4}.exe",
        W(T::FiletypePe),
        1,
    ),
    f(Office, r"c:\users\{u}\documents\~${doc}.docx", TMP, 8),
    f(
        Office,
        r"c:\users\{u}\documents\{doc}.docx",
        W(T::FiletypeOfficeOpenXml),
        8,
    ),
    f(
        Office,
        r"c:\users\{u}\documents\{doc}.xlsx",
        W(T::FiletypeOfficeOpenXml),
        5,
    ),
    f(
        Office,
        r"c:\users\{u}\documents\{doc}.doc",
        W(T::FiletypeOfficeLegacy),
        2,
    ),
    f(
        Office,
        r"c:\users\{u}\appdata\local\temp\~df{hex4}.tmp",
        TMP,
        10,
    ),
    f(
        Office,
        r"c:\users\{u}\appdata\roaming\microsoft\office\recent\{doc}.lnk",
        W(T::FiletypeMsLnk),
        4,
    ),
    f(
        Office,
        r"c:\users\{u}\appdata\local\microsoft\office\16.0\officefilecache\{hex8}.fsd",
        A,
        6,
    ),
    f(
        Office,
        r"c:\users\{u}\appdata\local\microsoft\windows\inetcache\content.mso\{hex8}.tmp",
        TMP,
        4,
    ),
    f(
        Mail,
        r"c:\users\{u}\appdata\local\microsoft\outlook\{u}@corp.example.com.ost",
        A,
        20,
    ),
    f(
        Mail,
        r"c:\users\{u}\appdata\local\microsoft\windows\inetcache\content.outlook\{hex8}\{doc}.docx",
        W(T::FiletypeOfficeOpenXml),
        3,
    ),
    f(
        Mail,
        r"c:\users\{u}\appdata\local\microsoft\windows\inetcache\content.outlook\{hex8}\{doc}.pdf",
        W(T::FiletypePdf),
        2,
    ),
    f(
        Mail,
        r"c:\users\{u}\appdata\local\temp\outlook logging\outlook-{hex4}.etl",
        A,
        3,
    ),
    f(
        Mail,
        r"c:\users\{u}\appdata\local\microsoft\outlook\roamcache\stream_autocomplete_{guid}.dat",
        A,
        3,
    ),
    f(
        Console,
        r"c:\users\{u}\appdata\local\temp\{hex4}.bat",
        TMP,
        3,
    ),
    f(
        Console,
        r"c:\users\{u}\appdata\local\temp\out_{num}.txt",
        W(T::FiletypeUnknown),
        3,
    ),
    f(
        Script,
        r"c:\users\{u}\appdata\local\temp\__psscriptpolicytest_{hex8}.ps1",
        TMP,
        10,
    ),
    f(
        Script,
        r"c:\users\{u}\appdata\local\microsoft\windows\powershell\startupprofiledata-noninteractive",
        A,
        6,
    ),
    f(
        Script,
        r"c:\users\{u}\appdata\roaming\microsoft\windows\powershell\psreadline\consolehost_history.txt",
        A,
        4,
    ),
    f(
        Script,
        r"c:\users\{u}\appdata\roaming\microsoft\windows\update.exe",
        W(T::FiletypePe),
        1,
    ),
    f(
        Script,
        r"c:\users\{u}\appdata\local\temp\{hex8}.dll",
        W(T::FiletypePe),
        1,
    ),
    f(
        Script,
        r"c:\programdata\{hex8}\svc.dat",
        W(T::FiletypeUnknown),
        1,
    ),
    f(
        Installer,
        r"c:\windows\installer\{hex8}.msi",
        W(T::FiletypeUnknown),
        3,
    ),
    f(Installer, r"c:\windows\installer\msi{hex4}.tmp", TMP, 6),
    f(
        Installer,
        r"c:\program files\common files\{doc}\{doc}.dll",
        W(T::FiletypePe),
        4,
    ),
    f(
        Installer,
        r"c:\program files (x86)\{doc}\{doc}.exe",
        W(T::FiletypePe),
        3,
    ),
    f(
        Installer,
        r"c:\windows\temp\{guid}\setup.exe",
        W(T::FiletypePe),
        2,
    ),
    f(
        Installer,
        r"c:\windows\winsxs\temp\inflight\{hex8}\{doc}.dll",
        W(T::FiletypePe),
        2,
    ),
    f(
        Installer,
        r"c:\users\{u}\appdata\local\temp\7z{hex8}\{doc}.txt",
        W(T::FiletypeUnknown),
        3,
    ),
    f(
        Installer,
        r"c:\users\{u}\downloads\{doc}\{doc}.exe",
        W(T::FiletypePe),
        1,
    ),
    f(
        Updater,
        r"c:\program files (x86)\google\update\download\{guid}\120.0.6099.130\120.0.6099.130_chrome_installer.exe",
        W(T::FiletypePe),
        2,
    ),
    f(Updater, r"c:\windows\temp\gum{hex4}.tmp", TMP, 6),
    f(
        Updater,
        r"c:\users\{u}\appdata\local\microsoft\onedrive\logs\personal\syncdiagnostics.log",
        A,
        6,
    ),
    f(
        Updater,
        r"c:\windows\softwaredistribution\download\{hex16}\windows10.0-kb5034441-x64.cab",
        W(T::FiletypeArchiveLzh),
        1,
    ),
    f(
        Search,
        r"c:\programdata\microsoft\search\data\applications\windows\windows.edb",
        A,
        10,
    ),
    f(
        Search,
        r"c:\programdata\microsoft\search\data\applications\windows\msstmp.log",
        TMP,
        6,
    ),
    f(
        Search,
        r"c:\programdata\microsoft\search\data\applications\windows\gathererlogs\systemindex\systemindex.{num}.crwl",
        A,
        4,
    ),
    f(
        Security,
        r"c:\programdata\microsoft\windows defender\scans\history\service\detectionhistory\{hex8}",
        W(T::FiletypeUnknown),
        2,
    ),
    f(
        Security,
        r"c:\programdata\microsoft\windows defender\scans\mpcache-{hex16}.bin",
        A,
        6,
    ),
    f(
        Security,
        r"c:\programdata\microsoft\windows defender\support\mpwpptracing-{num}.bin",
        A,
        4,
    ),
    f(Tool, r"c:\users\{u}\appdata\local\temp\{hex8}.tmp", TMP, 4),
    f(
        Tool,
        r"c:\users\{u}\appdata\local\microsoft\windows\inetcache\ie\{hex8}\{doc}[1].htm",
        TMP,
        1,
    ),
    f(
        Chat,
        r"c:\users\{u}\appdata\roaming\zoom\data\zoomus.enc.db",
        A,
        6,
    ),
    f(
        Chat,
        r"c:\users\{u}\appdata\roaming\slack\local storage\leveldb\{num}.log",
        A,
        6,
    ),
    f(
        Chat,
        r"c:\users\{u}\appdata\local\packages\msteams_8wekyb3d8bbwe\localcache\microsoft\msteams\logs\mstEAMS_{hex8}.log",
        A,
        5,
    ),
    f(
        Chat,
        r"c:\users\{u}\downloads\{doc}.pptx",
        W(T::FiletypeOfficeOpenXml),
        1,
    ),
];

#[derive(Debug)]
pub(crate) struct RegTpl {
    pub profile: Profile,
    pub path: &'static str,
    /// createkey, writeval, delkey, delval weights.
    pub actions: [u8; 4],
    pub weight: u16,
}

const fn r(profile: Profile, path: &'static str, actions: [u8; 4], weight: u16) -> RegTpl {
    RegTpl {
        profile,
        path,
        actions,
        weight,
    }
}

const WV: [u8; 4] = [0, 1, 0, 0];
const CK: [u8; 4] = [3, 6, 0, 1];
const MIX: [u8; 4] = [2, 6, 1, 2];

pub(crate) static REGS: &[RegTpl] = &[
    r(
        Quiet,
        r"\registry\machine\system\controlset001\control\session manager\memory management\prefetchparameters\bootid",
        WV,
        1,
    ),
    r(
        Service,
        r"\registry\machine\software\microsoft\windows nt\currentversion\notifications\data\418a073aa3bc3475",
        WV,
        8,
    ),
    r(
        Service,
        r"\registry\machine\system\controlset001\services\bam\state\usersettings\{sid}\\device\harddiskvolume2\windows\system32\{exe}",
        WV,
        6,
    ),
    r(
        Service,
        r"\registry\machine\software\microsoft\windows\currentversion\group policy\history\dcclientcache",
        MIX,
        3,
    ),
    r(
        Service,
        r"\registry\machine\system\controlset001\services\tcpip\parameters\interfaces\{guid}\dhcpserver",
        WV,
        2,
    ),
    r(
        Service,
        r"\registry\machine\software\microsoft\tracing\{exe}_rasapi32\enablefiletracing",
        WV,
        3,
    ),
    r(
        Service,
        r"\registry\machine\software\microsoft\windows\currentversion\windowsupdate\auto update\detect\lastsuccesstime",
        WV,
        2,
    ),
    r(
        Service,
        r"\registry\machine\system\controlset001\services\w32time\config\lastknowngoodtime",
        WV,
        2,
    ),
    r(
        Service,
        r"\registry\machine\software\microsoft\wbem\cimom\configvalueschanged",
        WV,
        2,
    ),
    r(
        Service,
        r"\registry\machine\system\controlset001\control\deviceclasses\{guid}\##?#root#rdpbus#0000#{guid}",
        CK,
        1,
    ),
    r(
        Shell,
        r"\registry\user\{sid}\software\microsoft\windows\currentversion\explorer\userassist\{cebff5cd-ace2-4f4f-9178-9926f41749ea}\count\{rot13}",
        WV,
        12,
    ),
    r(
        Shell,
        r"\registry\user\{sid}\software\microsoft\windows\currentversion\explorer\recentdocs\.docx",
        WV,
        4,
    ),
    r(
        Shell,
        r"\registry\user\{sid}\software\microsoft\windows\currentversion\explorer\recentdocs\mrulistex",
        WV,
        4,
    ),
    r(
        Shell,
        r"\registry\user\{sid}_classes\local settings\software\microsoft\windows\shell\bagmru\{num}",
        CK,
        4,
    ),
    r(
        Shell,
        r"\registry\user\{sid}\software\microsoft\windows\currentversion\explorer\featureusage\appswitched\{exe}",
        WV,
        6,
    ),
    r(
        Shell,
        r"\registry\user\{sid}\software\microsoft\windows\currentversion\explorer\sessioninfo\1\applicationviewmanagement\w32:{hex16}",
        MIX,
        3,
    ),
    r(
        Browser,
        r"\registry\user\{sid}\software\google\chrome\blbeacon\failed_count",
        WV,
        3,
    ),
    r(
        Browser,
        r"\registry\user\{sid}\software\google\chrome\profilepicker\{num}",
        MIX,
        2,
    ),
    r(
        Browser,
        r"\registry\machine\software\wow6432node\google\update\clientstate\{8a69d345-d564-463c-aff1-a69d9e530f96}\dr",
        WV,
        2,
    ),
    r(
        Browser,
        r"\registry\user\{sid}\software\microsoft\windows\currentversion\internet settings\zonemap\proxybypass",
        WV,
        1,
    ),
    r(
        Office,
        r"\registry\user\{sid}\software\microsoft\office\16.0\word\reading locations\document {num}\file path",
        MIX,
        5,
    ),
    r(
        Office,
        r"\registry\user\{sid}\software\microsoft\office\16.0\common\roaming\identities\{hex16}_adal\settings\1272\{guid}\listitems\{guid}",
        CK,
        5,
    ),
    r(
        Office,
        r"\registry\user\{sid}\software\microsoft\office\16.0\excel\resiliency\startupitems",
        MIX,
        3,
    ),
    r(
        Office,
        r"\registry\user\{sid}\software\microsoft\office\16.0\common\experiment\{exe}\ecsconfigs",
        WV,
        4,
    ),
    r(
        Mail,
        r"\registry\user\{sid}\software\microsoft\office\16.0\outlook\profiles\outlook\{hex16}\{num}",
        MIX,
        6,
    ),
    r(
        Mail,
        r"\registry\user\{sid}\software\microsoft\office\16.0\outlook\search\catalog",
        WV,
        3,
    ),
    r(
        Console,
        r"\registry\user\{sid}\software\microsoft\command processor\autorun",
        WV,
        1,
    ),
    r(
        Console,
        r"\registry\user\{sid}\console\%systemroot%_system32_cmd.exe",
        CK,
        2,
    ),
    r(
        Script,
        r"\registry\machine\software\microsoft\windows\currentversion\run\onedriveupdate",
        CK,
        1,
    ),
    r(
        Script,
        r"\registry\user\{sid}\software\microsoft\windows\currentversion\run\windowsupdate",
        CK,
        1,
    ),
    r(
        Script,
        r"\registry\user\{sid}\software\classes\ms-settings\shell\open\command\delegateexecute",
        CK,
        1,
    ),
    r(
        Script,
        r"\registry\machine\software\microsoft\powershell\1\shellids\microsoft.powershell\executionpolicy",
        WV,
        2,
    ),
    r(
        Script,
        r"\registry\user\{sid}\software\microsoft\windows\currentversion\internet settings\5.0\cache\extensible cache",
        MIX,
        4,
    ),
    r(
        Installer,
        r"\registry\machine\software\microsoft\windows\currentversion\installer\userdata\s-1-5-18\components\{hex16}",
        CK,
        8,
    ),
    r(
        Installer,
        r"\registry\machine\software\microsoft\windows\currentversion\uninstall\{guid}",
        CK,
        4,
    ),
    r(
        Installer,
        r"\registry\machine\software\classes\installer\products\{hex16}",
        MIX,
        4,
    ),
    r(
        Installer,
        r"\registry\machine\system\controlset001\services\{doc}",
        CK,
        1,
    ),
    r(
        Updater,
        r"\registry\machine\software\wow6432node\google\update\clientstate\{guid}\lastcheckperiod",
        WV,
        4,
    ),
    r(
        Updater,
        r"\registry\user\{sid}\software\microsoft\onedrive\accounts\personal\lastsignin",
        WV,
        3,
    ),
    r(
        Search,
        r"\registry\machine\software\microsoft\windows search\gather\windows\systemindex\sites\localhost\paths\{num}",
        MIX,
        6,
    ),
    r(
        Search,
        r"\registry\machine\software\microsoft\windows search\usngatherer\{guid}",
        WV,
        3,
    ),
    r(
        Security,
        r"\registry\machine\software\microsoft\windows defender\signature updates\signatureslastupdated",
        WV,
        3,
    ),
    r(
        Security,
        r"\registry\machine\software\microsoft\windows defender\scan\lastscanrun",
        WV,
        2,
    ),
    r(
        Tool,
        r"\registry\user\{sid}\software\sysinternals\process explorer\eulaaccepted",
        WV,
        2,
    ),
    r(
        Tool,
        r"\registry\machine\system\controlset001\services\procexp152\start",
        CK,
        1,
    ),
    r(
        Tool,
        r"\registry\user\{sid}\software\simontatham\putty\sshhostkeys\ssh-ed25519@22:10.20.0.15",
        WV,
        1,
    ),
    r(
        Chat,
        r"\registry\user\{sid}\software\zoomumx\lastcheckupdatetime",
        WV,
        2,
    ),
    r(
        Chat,
        r"\registry\user\{sid}\software\microsoft\windows\currentversion\run\com.squirrel.slack.slack",
        WV,
        1,
    ),
];

/// A network peer. `ip` is a representative address; the last octet varies unless `fixed`.
#[derive(Debug)]
pub(crate) struct Domain {
    pub profile: Profile,
    /// DNS name, or "" for a bare IP (no `utf8_netpath`).
    pub name: &'static str,
    pub ip: [u8; 4],
    pub port: u16,
    pub udp: bool,
    pub weight: u16,
}

const fn d(profile: Profile, name: &'static str, ip: [u8; 4], port: u16, weight: u16) -> Domain {
    Domain {
        profile,
        name,
        ip,
        port,
        udp: false,
        weight,
    }
}

const fn du(profile: Profile, name: &'static str, ip: [u8; 4], port: u16, weight: u16) -> Domain {
    Domain {
        udp: true,
        ..d(profile, name, ip, port, weight)
    }
}

pub(crate) static DOMAINS: &[Domain] = &[
    du(Service, "", [10, 0, 0, 10], 53, 10),
    d(Service, "dc01.corp.example.com", [10, 0, 0, 10], 389, 6),
    d(Service, "dc01.corp.example.com", [10, 0, 0, 10], 88, 4),
    d(Service, "dc01.corp.example.com", [10, 0, 0, 10], 135, 2),
    d(
        Service,
        "fileserver01.corp.example.com",
        [10, 0, 0, 21],
        445,
        3,
    ),
    du(Service, "time.windows.com", [168, 61, 215, 74], 123, 1),
    d(
        Service,
        "settings-win.data.microsoft.com",
        [20, 42, 65, 0],
        443,
        4,
    ),
    d(
        Service,
        "v10.events.data.microsoft.com",
        [20, 189, 173, 0],
        443,
        4,
    ),
    d(Service, "ctldl.windowsupdate.com", [93, 184, 221, 0], 80, 3),
    d(Service, "login.live.com", [20, 190, 159, 0], 443, 2),
    d(Service, "", [10, 0, 1, 0], 5985, 1),
    d(Shell, "arc.msn.com", [20, 49, 150, 0], 443, 3),
    d(
        Shell,
        "fileserver01.corp.example.com",
        [10, 0, 0, 21],
        445,
        3,
    ),
    d(Shell, "", [23, 4, 187, 0], 80, 1),
    d(Browser, "www.google.com", [142, 250, 64, 0], 443, 20),
    d(Browser, "www.gstatic.com", [142, 250, 65, 0], 443, 12),
    d(Browser, "fonts.googleapis.com", [142, 250, 72, 0], 443, 6),
    d(Browser, "clients4.google.com", [142, 250, 80, 0], 443, 5),
    d(
        Browser,
        "safebrowsing.googleapis.com",
        [142, 250, 81, 0],
        443,
        4,
    ),
    du(Browser, "www.youtube.com", [142, 250, 191, 0], 443, 5),
    d(Browser, "github.com", [140, 82, 112, 0], 443, 4),
    d(Browser, "stackoverflow.com", [151, 101, 1, 0], 443, 3),
    d(Browser, "en.wikipedia.org", [208, 80, 154, 0], 443, 3),
    d(Browser, "www.linkedin.com", [13, 107, 42, 0], 443, 3),
    d(
        Browser,
        "login.microsoftonline.com",
        [20, 190, 151, 0],
        443,
        4,
    ),
    d(Browser, "www.office.com", [13, 107, 6, 0], 443, 3),
    d(Browser, "cdn.jsdelivr.net", [151, 101, 1, 0], 443, 2),
    d(Browser, "ajax.googleapis.com", [142, 250, 73, 0], 443, 2),
    d(Browser, "news.ycombinator.com", [209, 216, 230, 0], 443, 1),
    d(Browser, "www.amazon.com", [54, 239, 28, 0], 443, 2),
    d(Browser, "docs.google.com", [142, 250, 68, 0], 443, 3),
    d(Browser, "update.googleapis.com", [142, 250, 69, 0], 443, 1),
    d(Browser, "actblues.com", [40, 112, 210, 0], 80, 1),
    d(
        Office,
        "officeclient.microsoft.com",
        [52, 109, 8, 0],
        443,
        4,
    ),
    d(
        Office,
        "nexusrules.officeapps.live.com",
        [52, 111, 240, 0],
        443,
        3,
    ),
    d(Office, "ecs.office.com", [52, 113, 194, 0], 443, 3),
    d(Mail, "outlook.office365.com", [52, 96, 88, 0], 443, 20),
    d(
        Mail,
        "autodiscover.corp.example.com",
        [10, 0, 0, 30],
        443,
        3,
    ),
    d(Mail, "smtp.office365.com", [52, 97, 180, 0], 587, 2),
    d(Mail, "substrate.office.com", [52, 96, 111, 0], 443, 4),
    d(
        Console,
        "fileserver01.corp.example.com",
        [10, 0, 0, 21],
        445,
        4,
    ),
    d(Console, "dc01.corp.example.com", [10, 0, 0, 10], 445, 2),
    d(
        Script,
        "raw.githubusercontent.com",
        [185, 199, 108, 0],
        443,
        3,
    ),
    d(Script, "pastebin.com", [104, 20, 67, 0], 443, 1),
    d(Script, "", [185, 220, 101, 47], 443, 1),
    d(Script, "", [45, 77, 65, 211], 8080, 1),
    d(Script, "tvrain.ru", [178, 248, 236, 0], 22, 1),
    d(
        Script,
        "www.powershellgallery.com",
        [13, 107, 246, 0],
        443,
        2,
    ),
    d(
        Installer,
        "download.microsoft.com",
        [23, 45, 232, 0],
        443,
        2,
    ),
    d(Updater, "update.googleapis.com", [142, 250, 69, 0], 443, 8),
    d(Updater, "dl.google.com", [142, 250, 70, 0], 443, 5),
    d(Updater, "oneclient.sfx.ms", [23, 201, 35, 0], 443, 4),
    d(Updater, "g.live.com", [20, 42, 73, 0], 443, 3),
    d(Updater, "tools.google.com", [142, 250, 71, 0], 443, 3),
    d(
        Updater,
        "fe3cr.delivery.mp.microsoft.com",
        [20, 12, 23, 0],
        443,
        4,
    ),
    d(Security, "wdcp.microsoft.com", [52, 182, 143, 0], 443, 4),
    d(
        Security,
        "definitionupdates.microsoft.com",
        [23, 216, 81, 0],
        443,
        3,
    ),
    d(Tool, "dc01.corp.example.com", [10, 0, 0, 10], 445, 3),
    d(Tool, "download.sysinternals.com", [152, 199, 19, 0], 443, 1),
    d(Tool, "", [10, 20, 0, 15], 22, 2),
    d(Chat, "teams.microsoft.com", [52, 113, 194, 0], 443, 8),
    d(Chat, "zoom.us", [170, 114, 52, 0], 443, 6),
    du(Chat, "", [170, 114, 10, 0], 8801, 4),
    d(Chat, "wss-primary.slack.com", [3, 94, 68, 0], 443, 4),
    d(Chat, "srv-app-02.corp.example.com", [10, 0, 1, 42], 3389, 3),
];
