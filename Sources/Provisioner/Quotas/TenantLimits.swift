import Foundation

/// With a php-fpm master per tenant (`TenantMasters`), each tenant's unit gets a drop-in of
/// desa's, `desa-phpX.Y-fpm@USER.service.d/desa-limits.conf`, holding its cgroup to the
/// tenant's share: `TasksMax=` (every process and thread its PHP and the programs it starts
/// may have at once: the kernel refuses the fork beyond it), `MemoryMax=` with
/// `MemorySwapMax=0` (beyond it the kernel reclaims, then kills inside that cgroup only),
/// and `CPUQuota=`. systemd applies a changed drop-in to a running unit's cgroup at
/// `daemon-reload`: no restart, the site keeps serving.
enum TenantLimits {
    static let fileName = "desa-limits.conf"

    static func path(_ t: Tenant, _ c: Config) -> String { TenantMasters.dropInDir(t, c) + "/" + fileName }

    static func content(_ t: Tenant, _ q: TenantQuota, _ c: Config) -> String {
        let s = c.quota
        return """
            \(Renderer.nginxHeaderPrefix)\(t.code)
            # \(t.slug)'s share of the server (quota.* or desactl quota set), held by the kernel in this unit's cgroup.
            [Service]
            TasksMax=\(q.tasks(s))
            MemoryMax=\(q.memory(s))
            MemorySwapMax=0
            CPUQuota=\(q.cpu(s))%

            """
    }

    /// desa's drop-ins now, by path: one listing of the unit directory, then the drop-in of
    /// each instance directory of desa's template units.
    static func observe(_ c: Config) -> [String: SeenFile] {
        let dir = TenantMasters.unitDir(c)
        var out: [String: SeenFile] = [:]
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return out }
        for n in names where n.hasPrefix("desa-php") && n.hasSuffix(".service.d") && n.contains("-fpm@") {
            let p = dir + "/" + n + "/" + fileName
            if let bytes = AtomicFiles.readBytes(p) { out[p] = SeenFile(bytes: bytes) }
        }
        return out
    }

    /// Each active tenant's drop-in written (suspended, it runs no PHP); the rest of desa's go
    /// to `orphanSteps`.
    static func plan(_ d: DesiredState, _ seen: [String: SeenFile], quotas: (Tenant) -> TenantQuota, into out: inout CapabilityPlan) {
        var files = seen
        let systemd = ServiceSpec.systemd(d.config).name
        for t in d.tenants where t.desired == .active {
            let p = path(t, d.config)
            if let s = Step.write(p, content(t, quotas(t), d.config), service: systemd, tenant: t.code, existing: files.removeValue(forKey: p)) {
                out.steps.append(s)
            }
        }
        orphanSteps(files, service: systemd, known: d.known, removeUnknown: d.removeUnknown, into: &out)
    }
}
