# RPM %pre: the service's system user. Static (not DynamicUser=) so the database keeps one owner
# across upgrades and analysts can be given read access through the cbtrail group.
getent group cbtrail >/dev/null || groupadd -r cbtrail
getent passwd cbtrail >/dev/null || \
    useradd -r -g cbtrail -d /var/lib/cbtrail -s /sbin/nologin -c "cbtrail daemon" cbtrail
exit 0
