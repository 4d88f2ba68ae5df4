# RPM %postun ($1: 0 = erase, 1 = upgrade): pick up the new unit, and restart a running service
# on upgrade so the new binary runs (a drained stop: nothing unacked is lost).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart cbtrail.service >/dev/null 2>&1 || :
    fi
fi
exit 0
