import Foundation

/// The kernel backend: user quotas on the filesystem of the web root (ext4 with the quota
/// feature, or XFS, mounted with `usrquota`), on each tenant's UID. The kernel charges a
/// file to its owner, and a tenant cannot give a file away (`chown` is root's), so
/// whatever its UID writes on that filesystem counts, wherever it writes it; nothing of
/// it is a project ID a file's owner could change. Set with `setquota`, read for every
/// tenant at once with `repquota`.
enum KernelBackend {
    /// One UID's line of `repquota -u -n -O csv`: KiB used and hard limit, inodes likewise.
    struct Line: Sendable, Equatable {
        var usedKiB: Int64
        var hardKiB: Int64
        var usedInodes: Int64
        var hardInodes: Int64
    }

    struct Seen: Sendable {
        /// The mount point holding the web root, and whether it has user quotas on.
        var mount: String?
        var quotasOn: Bool
        var lines: [Int: Line]
        /// Why it could not be read.
        var unreadable: String?
    }

    /// The mount point a path lies on: the longest mount point that is a prefix of it.
    static func mountPoint(of path: String, _ table: [String: Mounts.Entry]) -> String? {
        table.keys.filter { path == $0 || path.hasPrefix($0 == "/" ? "/" : $0 + "/") }.max { $0.count < $1.count }
    }

    /// Whether a mount enforces user quotas: its super options name them.
    static func quotasOn(_ mount: String) -> Bool {
        guard let text = AtomicFiles.read("/proc/self/mountinfo") else { return false }
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: false)
            guard f.count > 4, Mounts.unescape(f[4]) == mount, let dash = f.firstIndex(of: "-"), f.count > dash + 3 else { continue }
            let options = f[dash + 3].split(separator: ",")
            if options.contains(where: { ["usrquota", "usrjquota=aquota.user", "quota", "uquota", "uqnoenforce"].contains($0) || $0.hasPrefix("usrjquota") }) {
                return true
            }
        }
        return false
    }

    /// `repquota -u -n -O csv` parsed: `#UID,status,status,used,soft,hard,grace,files,soft,hard,grace`.
    static func parse(_ csv: String) -> [Int: Line] {
        var out: [Int: Line] = [:]
        for row in csv.split(separator: "\n").dropFirst() {
            let f = row.split(separator: ",", omittingEmptySubsequences: false)
            guard f.count >= 10, f[0].hasPrefix("#"), let uid = Int(f[0].dropFirst()) else { continue }
            out[uid] = Line(usedKiB: Int64(f[3]) ?? 0, hardKiB: Int64(f[5]) ?? 0, usedInodes: Int64(f[7]) ?? 0, hardInodes: Int64(f[9]) ?? 0)
        }
        return out
    }

    static func read(_ c: Config, runner: ProcessRunning = SystemProcessRunner()) -> Seen {
        let table = Mounts.table()
        guard let mount = mountPoint(of: c.webRoot, table) else {
            return Seen(mount: nil, quotasOn: false, lines: [:], unreadable: "no mount holds \(c.webRoot)")
        }
        guard quotasOn(mount) else {
            return Seen(mount: mount, quotasOn: false, lines: [:],
                        unreadable: "\(mount) (where \(c.webRoot) lies) is not mounted with usrquota; quota.backend = \"kernel\" needs it (or use \"image\")")
        }
        do {
            let r = try runner.run(["/usr/sbin/repquota", "-u", "-n", "-O", "csv", mount])
            guard r.ok else { return Seen(mount: mount, quotasOn: true, lines: [:], unreadable: "repquota \(mount): \(r.message)") }
            return Seen(mount: mount, quotasOn: true, lines: parse(r.stdout))
        } catch {
            return Seen(mount: mount, quotasOn: true, lines: [:], unreadable: Applier.message(error))
        }
    }

    static func plan(_ d: DesiredState, _ seen: Seen, quotas: (Tenant) -> TenantQuota, into out: inout CapabilityPlan) {
        for t in d.tenants {
            let line = seen.lines[t.uid]
            if t.desired == .deleted {
                // The UID may be given to another village one day: it leaves with no limit.
                if let mount = seen.mount, let l = line, l.hardKiB != 0 || l.hardInodes != 0 {
                    out.steps.append(Step(t.code, "clear-quota", .userRemoval, .custom(SetKernelQuota(uid: t.uid, kib: 0, inodes: 0, mount: mount))))
                }
                continue
            }
            guard let mount = seen.mount, seen.unreadable == nil else {
                out.steps.append(.fail(t.code, "its quota cannot be held: " + (seen.unreadable ?? "no mount for the web root")))
                continue
            }
            let q = quotas(t)
            let kib = (q.bytes + 1023) / 1024
            if line?.hardKiB != kib || line?.hardInodes != Int64(q.inodes) {
                out.steps.append(Step(t.code, "set-quota", .users, .custom(SetKernelQuota(uid: t.uid, kib: kib, inodes: Int64(q.inodes), mount: mount))))
            }
        }
    }
}

/// `setquota -u UID 0 KiB 0 INODES MOUNT`: a hard limit only (no soft limit, no grace to
/// wait out); 0 and 0: no limit. By number, so a user not yet made (the users phase runs
/// first anyway) or already gone is fine.
struct SetKernelQuota: CustomEffect {
    var uid: Int
    var kib: Int64
    var inodes: Int64
    var mount: String
    var subject: String { "uid \(uid) on \(mount): \(kib == 0 ? "no limit" : ByteSize.readable(kib * 1024) + ", \(inodes) inodes")" }

    func run(_ context: ApplyContext) throws {
        try Quota.run(context, ["/usr/sbin/setquota", "-u", "\(uid)", "0", "\(kib)", "0", "\(inodes)", mount], "setting the quota of uid \(uid)")
    }
}
