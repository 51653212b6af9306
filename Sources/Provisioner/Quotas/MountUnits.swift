import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// In production, the image backend's mounts are systemd's too, so a reboot brings every
/// home back before the web server and PHP start: a mount unit per tenant
/// (`srv-desa-cileunyi\x2dkulon.mount`, its name the home's path as systemd escapes it),
/// wanted by `local-fs.target` through a drop-in of its own (`local-fs.target.d/desa-CODE.conf`),
/// so nothing is enabled by a link, and an image that fails to mount fails its tenant alone
/// (a Wants=, not a Requires=: the boot goes on; the home's mount point stays root's 0700,
/// so nothing of the tenant's is written outside its image meanwhile). `desactl apply`
/// mounts the images itself as well, before writing these; systemd takes a mount it finds
/// at a unit's place as that unit's. A sandbox has no service manager: `apply` alone.
enum MountUnits {
    /// The unit's name for a mount point, as `systemd-escape --path --suffix=mount` makes it.
    static func unitName(forPath path: String) -> String {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        guard !parts.isEmpty else { return "-.mount" }
        var out = ""
        for (i, part) in parts.enumerated() {
            if i > 0 { out += "-" }
            for (j, b) in part.utf8.enumerated() {
                let plain = (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a)
                    || b == UInt8(ascii: ":") || b == UInt8(ascii: "_") || (b == UInt8(ascii: ".") && !(i == 0 && j == 0))
                out += plain ? String(UnicodeScalar(b)) : String(format: "\\x%02x", b)
            }
        }
        return out + ".mount"
    }

    static func unitPath(_ t: Tenant, _ c: Config) -> String { c.quota.unitDir + "/" + unitName(forPath: t.home(c)) }
    static func wantsDir(_ c: Config) -> String { c.quota.unitDir + "/local-fs.target.d" }
    static func wantsPath(_ t: Tenant, _ c: Config) -> String { wantsDir(c) + "/desa-" + t.code + ".conf" }

    static func unit(_ t: Tenant, _ c: Config) -> String {
        let image = ImageBackend.imagePath(t, c)
        return """
            \(Renderer.nginxHeaderPrefix)\(t.code)
            # The quota image of \(t.slug), mounted at boot (desactl apply mounts it too).
            [Unit]
            Description=desa: quota image of \(t.slug)
            RequiresMountsFor=\((image as NSString).deletingLastPathComponent)

            [Mount]
            What=\(image)
            Where=\(t.home(c))
            Type=ext4
            Options=\(ImageBackend.mountOptions)

            """
    }

    static func wants(_ t: Tenant, _ c: Config) -> String {
        """
        \(Renderer.nginxHeaderPrefix)\(t.code)
        [Unit]
        Wants=\(unitName(forPath: t.home(c)))

        """
    }

    /// The mount units and local-fs.target's drop-ins now, by path: desa's by their header,
    /// and anyone else's, which desa never overwrites or removes.
    static func observe(_ c: Config) -> [String: SeenFile] {
        var out: [String: SeenFile] = [:]
        for (dir, suffix) in [(c.quota.unitDir, ".mount"), (wantsDir(c), ".conf")] {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { continue }
            for n in names where n.hasSuffix(suffix) && !n.hasPrefix(".") {
                if let bytes = AtomicFiles.readBytes(dir + "/" + n) { out[dir + "/" + n] = SeenFile(bytes: bytes) }
            }
        }
        return out
    }

    /// Each tenant's unit and drop-in written; the rest of desa's files (a deleted tenant's,
    /// or those of tenants the database does not know) go to `orphanSteps`, which removes a
    /// known tenant's and reports, or removes when asked, the others.
    static func plan(_ d: DesiredState, _ seen: [String: SeenFile], into out: inout CapabilityPlan) {
        var files = seen
        let systemd = ServiceSpec.systemd(d.config).name
        for t in d.tenants where t.desired != .deleted {
            for (path, content) in [(unitPath(t, d.config), unit(t, d.config)), (wantsPath(t, d.config), wants(t, d.config))] {
                if let s = Step.write(path, content, service: systemd, tenant: t.code, existing: files.removeValue(forKey: path)) {
                    out.steps.append(s)
                }
            }
        }
        orphanSteps(files, service: systemd, known: d.known, removeUnknown: d.removeUnknown, into: &out)
    }
}
