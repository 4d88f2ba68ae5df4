# RPM %post ($1: 1 = install, 2 = upgrade). systemd creates /var/lib/cbtrail from StateDirectory=;
# creating it here too lets `cbtrail` CLI commands run before the first start.
install -d -m 0750 -o cbtrail -g cbtrail /var/lib/cbtrail
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
    echo "cbtrail installed. Edit /etc/cbtrail/cbtrail.toml, run 'cbtrail check-config --config /etc/cbtrail/cbtrail.toml',"
    echo "then 'systemctl enable --now cbtrail'. See /usr/share/doc/cbtrail/INSTALL.md."
fi
exit 0
