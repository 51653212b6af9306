import Foundation

/// Each tenant's process limit in production: systemd starts every php-fpm master with
/// `LimitNPROC=` (a drop-in of desa's beside the Debian unit), the same RLIMIT_NPROC a
/// sandbox's master gets from prlimit. The master runs as root, which the limit does not
/// bind; its workers inherit it, and the kernel counts it against the tenant's UID at every
/// fork of theirs and of the programs they start. A limit is set at the master's start, so
/// a new one takes a restart of the service (once, when the drop-in changes; a reload
/// re-executes the master with the limit it had).
enum ProcessLimit {
    static func unitName(_ service: String) -> String { service.hasSuffix(".service") ? service : service + ".service" }

    /// The systemd services of the config's php-fpm versions, once each.
    static func services(_ c: Config) -> [String] {
        Set(c.php.versions.values.map(\.service)).filter { !$0.isEmpty }.sorted()
    }

    static func dropIn(_ service: String, _ c: Config) -> String {
        c.quota.unitDir + "/" + unitName(service) + ".d/desa-processes.conf"
    }

    static func content(_ c: Config) -> String {
        """
        # desa-managed: each tenant's process limit (quota.processes), inherited by the pools' workers
        [Service]
        LimitNPROC=\(c.quota.processes)

        """
    }

    /// The php-fpm services of this config whose drop-in is not as it should be, with the
    /// path and what it should hold (production only, and only with quotas on).
    static func pending(_ c: Config, read: (String) -> String?) -> [SetProcessLimit] {
        // Masters per tenant: each unit's TasksMax= (TenantLimits) holds its processes.
        guard c.mode == .production, c.quota.backend != .none, !TenantMasters.on(c) else { return [] }
        return services(c).compactMap { service in
            let path = dropIn(service, c), want = content(c)
            return read(path) == want ? nil : SetProcessLimit(path: path, content: want, unit: unitName(service))
        }
    }
}

/// The drop-in written, systemd told, and the service restarted so its master starts under
/// the new limit.
struct SetProcessLimit: CustomEffect {
    var path: String
    var content: String
    var unit: String
    var subject: String { "\(unit): \(content.split(separator: "\n").last ?? "") (restarts it)" }

    func run(_ context: ApplyContext) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o755])
        try AtomicFiles.write([FileWrite(path: path, content: content, mode: 0o644)])
        for argv in [["/usr/bin/systemctl", "daemon-reload"], ["/usr/bin/systemctl", "restart", unit]] {
            let r = try context.runner.run(argv)
            guard r.ok else { throw DesaError.system("\(argv.joined(separator: " ")) failed: \(r.message)") }
        }
    }
}
