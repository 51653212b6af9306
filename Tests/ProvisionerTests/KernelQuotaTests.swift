import Foundation
import Testing
@testable import Provisioner

/// The kernel backend (`quota.backend = "kernel"`), enforcing for real. This machine's
/// kernel has no quota support, so the test boots Debian's User-Mode Linux kernel (which
/// has) on the host's own filesystem, mounts an ext4 image made with the quota feature
/// with `usrquota`, and runs this same test binary's inside half there: the quotas
/// capability observes the mount, plans, sets the tenant's limit with `setquota`, and a
/// program running as the tenant's UID is stopped at it. The inside half writes what it
/// saw to a report the host half checks, so a run that tested nothing cannot pass.
@Suite("Quotas: the kernel backend, in User-Mode Linux", .serialized)
struct KernelQuotaTests {
    static let mountVar = "DESA_TEST_UML_QUOTA_MOUNT"
    static let reportVar = "DESA_TEST_UML_QUOTA_REPORT"
    static let uml = "/usr/bin/linux.uml"
    static let uid = 61_234
    static let mib: Int64 = 1 << 20

    struct Report: Codable {
        var firstPlan: [String] = []
        var firstSubjects: [String] = []
        var planAfterSet: [String] = []
        var written: Int64 = 0
        var ddRefused = ""
        var writtenElsewhere: Int64 = 0
        var measuredBytes: Int64 = 0
        var measuredLimit: Int64 = 0
        var unmeasured: String?
        var raisedPlan: [String] = []
        var writtenAfterRaise: Int64 = 0
        var deletedPlan: [String] = []
        var limitAfterClear: Int64 = -1
    }

    @Test("a 16 MiB kernel quota on the tenant's UID: planned, set, enforced wherever it writes on the filesystem, measured, raised, cleared")
    func enforced() throws {
        if let mount = ProcessInfo.processInfo.environment[Self.mountVar] {
            let report = try Self.inside(mount)
            let data = try JSONEncoder().encode(report)
            try data.write(to: URL(fileURLWithPath: ProcessInfo.processInfo.environment[Self.reportVar]!))
            return
        }
        let r = try Self.boot()
        #expect(r.firstPlan == ["set-quota"])
        #expect(r.firstSubjects.first?.hasPrefix("uid \(Self.uid) on ") == true && r.firstSubjects.first?.hasSuffix(": 16.0 MiB, 1024 inodes") == true,
                "\(r.firstSubjects)")
        #expect(r.planAfterSet == [], "once set, the plan is empty: repquota reads back what setquota set")
        #expect(r.ddRefused.contains("Disk quota exceeded"), "\(r.ddRefused)")
        #expect(r.written <= 16 * Self.mib && r.written >= 15 * Self.mib, "written before the kernel refused: \(r.written)")
        #expect(r.writtenElsewhere == 0, "a full tenant writes nothing anywhere else on the filesystem: \(r.writtenElsewhere)")
        #expect(r.unmeasured == nil)
        #expect(r.measuredLimit == 16 * Self.mib)
        #expect(r.measuredBytes >= r.written && r.measuredBytes <= 16 * Self.mib, "desactl quota report's figure: \(r.measuredBytes)")
        #expect(r.raisedPlan == ["set-quota"])
        #expect(r.writtenAfterRaise == 8 * Self.mib, "raised to 32 MiB, 8 MiB more fits: \(r.writtenAfterRaise)")
        #expect(r.deletedPlan == ["clear-quota"])
        #expect(r.limitAfterClear == 0, "a deleted tenant's UID is left with no limit")
    }

    @Test("a web root on a filesystem without usrquota: every tenant's plan fails, naming the mount and the way out")
    func notMounted() throws {
        let dir = "/var/tmp/desa-test-kq-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/srv", withIntermediateDirectories: true)
        let c = Self.config(dir)
        let steps = try Self.plan(c, try RendererTests.tenant(), rows: [:])
        #expect(steps.map(\.op) == ["fail"])
        guard case .fail(let why)? = steps.first?.effect else { Issue.record("no failure: \(steps)"); return }
        #expect(why.contains("is not mounted with usrquota") && why.contains("\"image\""), "\(why)")
    }

    static func config(_ dir: String) -> Config {
        var c = RendererTests.config(dir: dir)
        var q = c.quota
        q.backend = .kernel
        q.default = ByteSize(bytes: 16 * mib)
        q.closedDirs = []
        c.set(q)
        return c
    }

    static func plan(_ c: Config, _ t: Tenant, rows: [String: TenantQuota]) throws -> [Step] {
        var d = DesiredState(config: c, renderer: try Renderer(config: c), tenants: [t], aliases: [:], webGID: 33, webUID: 33, now: Date())
        d.set(QuotasCapability.self, .init(rows: rows))
        let capability = QuotasCapability()
        let observer = SystemObserver(users: Users(runner: SystemProcessRunner(), passwdFile: "/etc/passwd", sysusersFile: c.sysusersFile))
        return try capability.plan(d, try capability.observe(d, observer)).steps
    }

    static func run(_ c: Config, _ steps: [Step]) throws {
        let context = ApplyContext(config: c, runner: SystemProcessRunner())
        for s in steps {
            guard case .custom(let effect) = s.effect else { throw DesaError.system("not a custom effect: \(s)") }
            try effect.run(context)
        }
    }

    /// Writes `mib` MiB of zeros to `path` as the tenant's UID; what landed, and dd's complaint.
    static func write(_ path: String, mib count: Int) throws -> (bytes: Int64, stderr: String) {
        let r = try SystemProcessRunner().run(["/usr/bin/setpriv", "--reuid=\(uid)", "--regid=\(uid)", "--clear-groups",
                                               "/bin/dd", "if=/dev/zero", "of=\(path)", "bs=1M", "count=\(count)", "oflag=append", "conv=notrunc"])
        var st = stat()
        return (stat(path, &st) == 0 ? Int64(st.st_size) : 0, r.stderr)
    }

    /// Inside UML, as root, with an ext4 filesystem mounted at `mount` with usrquota.
    static func inside(_ mount: String) throws -> Report {
        var r = Report()
        let c = config(mount)
        var t = try RendererTests.tenant()
        t.uid = uid
        let home = c.webRoot + "/" + t.slug
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: mount + "/elsewhere", withIntermediateDirectories: true)
        chown(home, uid_t(uid), gid_t(uid))
        chmod(mount + "/elsewhere", 0o1777)

        let first = try plan(c, t, rows: [:])
        r.firstPlan = first.map(\.op); r.firstSubjects = first.map(\.subject)
        try run(c, first)
        r.planAfterSet = try plan(c, t, rows: [:]).map(\.op)

        let big = try write(home + "/big.bin", mib: 40)
        r.written = big.bytes; r.ddRefused = big.stderr
        r.writtenElsewhere = try write(mount + "/elsewhere/more.bin", mib: 4).bytes

        let usage = try QuotaMeter.measure(c, tenants: [t], quotas: [:], databases: [:])
        r.measuredBytes = usage.first?.usedBytes ?? -1
        r.measuredLimit = usage.first?.limitBytes ?? -1
        r.unmeasured = usage.first.map { $0.unmeasured } ?? "no usage row"

        let raised = [t.code: TenantQuota(code: t.code, size: ByteSize(bytes: 32 * mib), c.quota)]
        let raise = try plan(c, t, rows: raised)
        r.raisedPlan = raise.map(\.op)
        try run(c, raise)
        r.writtenAfterRaise = try write(mount + "/elsewhere/after.bin", mib: 8).bytes

        t.desired = .deleted
        let clear = try plan(c, t, rows: raised)
        r.deletedPlan = clear.map(\.op)
        try run(c, clear)
        r.limitAfterClear = KernelBackend.read(c).lines[uid]?.hardKiB ?? -1
        return r
    }

    /// On the host: boots UML with a fresh quota-enabled ext4 image, runs the inside half of
    /// this test there, and returns its report.
    static func boot() throws -> Report {
        let modules = "/usr/lib/uml/modules"
        guard FileManager.default.isExecutableFile(atPath: uml), let version = try? FileManager.default.contentsOfDirectory(atPath: modules).first else {
            throw DesaError.system("User-Mode Linux is not installed (\(uml), \(modules)): scripts/install-deps.sh installs user-mode-linux")
        }
        let dir = "/var/tmp/desa-test-uml-quota-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir + "/mnt", withIntermediateDirectories: true)
        let runner = SystemProcessRunner()
        let image = dir + "/disk.img"
        try #require(try runner.run(["/usr/bin/truncate", "-s", "96M", image]).ok)
        let mkfs = try runner.run(["/usr/sbin/mkfs.ext4", "-q", "-F", "-O", "quota", "-E", "quotatype=usrquota", "-I", "256", image])
        try #require(mkfs.ok, "\(mkfs.message)")
        let binary = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let quotaModules = "\(modules)/\(version)/kernel/fs/quota"
        // PID 1 of the UML kernel. Every path in it is one this test made or found.
        let script = """
        #!/bin/sh
        export PATH=/usr/sbin:/usr/bin:/sbin:/bin
        mount -t proc proc /proc; mount -t sysfs sys /sys
        {
          insmod '\(quotaModules)/quota_tree.ko' && insmod '\(quotaModules)/quota_v2.ko' &&
          mount -o usrquota /dev/ubda '\(dir)/mnt' &&
          env \(mountVar)='\(dir)/mnt' \(reportVar)='\(dir)/report.json' '\(binary)' --testing-library swift-testing --filter 'KernelQuotaTests/enforced'
          echo "exit status $?"
          umount '\(dir)/mnt'
        } > '\(dir)/inside.log' 2>&1
        poweroff -f

        """
        try script.write(toFile: dir + "/init.sh", atomically: true, encoding: .utf8)
        chmod(dir + "/init.sh", 0o755)
        let boot = try runner.run([uml, "mem=768M", "uml_dir=\(dir)", "ubda=\(image)", "root=/dev/root", "rootfstype=hostfs", "rootflags=/", "rw",
                                   "init=\(dir)/init.sh", "con=null", "con0=fd:0,fd:1"])
        let log = AtomicFiles.read(dir + "/inside.log") ?? "(no log; linux.uml exit \(boot.status): \(boot.stdout.suffix(2000)) \(boot.stderr.suffix(2000)))"
        guard let data = FileManager.default.contents(atPath: dir + "/report.json") else {
            throw DesaError.system("the inside half wrote no report; its output:\n\(log.suffix(4000))")
        }
        return try JSONDecoder().decode(Report.self, from: data)
    }
}
