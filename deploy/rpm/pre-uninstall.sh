# RPM %preun ($1: 0 = erase, 1 = upgrade): stop and disable on erase only. The database in
# /var/lib/cbtrail is not part of the package and stays.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now cbtrail.service >/dev/null 2>&1 || :
fi
exit 0
