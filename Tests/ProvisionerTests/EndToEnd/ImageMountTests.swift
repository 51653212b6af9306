import Foundation
import Testing
@testable import Provisioner

/// Runs programs for real and keeps the names of those it ran.
final class RecordingRunner: ProcessRunning, @unchecked Sendable {
    private let lock = NSLock()
    private var ran: [[String]] = []
    let real = SystemProcessRunner()
    var programs: [String] { lock.withLock { ran.map { ($0.first.map { ($0 as NSString).lastPathComponent }) ?? "" } } }
    func reset() { lock.withLock { ran = [] } }
    func run(_ argv: [String]) throws -> ProcessResult { lock.withLock { ran.append(argv) }; return try real.run(argv) }
    func runDetached(_ argv: [String], logFile: String) throws -> Int32 { try real.runDetached(argv, logFile: logFile) }
    func spawnDetached(_ argv: [String], logFile: String, cwd: String?) throws -> pid_t { try real.spawnDetached(argv, logFile: logFile, cwd: cwd) }
}

/// The image backend's mounts: made and mounted in desa's own process (a loop device of its
/// own, mount(2)), each with its tenant's limit to the block; and, in production, the mount
/// units that bring every image back at boot.
@Suite("Quotas: image mounts and their boot units", .serialized)
struct ImageMountTests {
    static let mib: Int64 = 1 << 20

    @Test("images of one geometry: the first is limited by tune2fs after its mount, the next made with its exact reserve; each tenant's limit is its quota to the block; unmounted, the loop device is freed")
    func exactReserve() throws {
        let dir = "/var/tmp/desa-test-imgmount-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let runner = RecordingRunner()
        let context = ApplyContext(config: RendererTests.config(dir: dir), runner: runner)
        let quota = 24 * Self.mib
        // A geometry no other test uses, so what this process learned before does not count.
        let inodes = 1536 + Int(getpid() % 512)
        var devices: [String] = []
        for name in ["a", "b", "c"] {
            runner.reset()
            let image = dir + "/images/\(name).img", home = dir + "/\(name)"
            try MakeImage(image: image, imageDir: dir + "/images", bytes: ImageBackend.imageBytes(for: quota), inodes: inodes, quota: quota).run(context)
            try MountImage(image: image, home: home, uid: 0, gid: 0, limit: quota).run(context)
            defer { try? UnmountImage(home: home).run(context) }
            let programs = runner.programs
            #expect(programs.first == "mkfs.ext4" && !programs.contains("mount"), "mounted in-process: \(programs)")
            #expect(programs.contains("tune2fs") == (name == "a"), "\(name): \(programs)")
            let u = try #require(Mounts.usage(home))
            #expect(u.limitBytes == quota, "\(name): the tenant may have \(u.limitBytes) bytes, not its quota \(quota)")
            let device = try #require(Mounts.loopDevice(mountedAt: home))
            #expect(Mounts.loopBackingFile("/dev/" + device) == image)
            devices.append(device)
        }
        // AUTOCLEAR: once unmounted, no device still holds an image.
        for d in devices {
            let backing = AtomicFiles.read("/sys/block/\(d)/loop/backing_file") ?? ""
            #expect(!backing.hasPrefix(dir), "\(d) still holds \(backing)")
        }
    }

    @Test("mount unit names are systemd's own escaping of the home's path")
    func unitNames() throws {
        for path in ["/srv/desa/cileunyi-kulon", "/var/tmp/desa sandbox/srv/a.b", "/srv/.hidden/x_y:z", "/srv/desa/ünï"] {
            let r = try SystemProcessRunner().run(["/usr/bin/systemd-escape", "--path", "--suffix=mount", path])
            #expect(r.ok)
            #expect(MountUnits.unitName(forPath: path) == r.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "\(path)")
        }
    }

    @Test("production plans a mount unit and a local-fs.target drop-in per tenant that systemd-analyze accepts; written, nothing more; a unit not desa's refused; a deleted tenant's removed")
    func productionUnits() throws {
        let dir = "/var/tmp/desa-test-units-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir + "/units", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var c = RendererTests.config(dir: dir)
        c.mode = .production
        c.php.masters = .shared
        var q = c.quota
        q.backend = .image
        q.unitDir = dir + "/units"
        q.closedDirs = []
        c.set(q)
        var t = try RendererTests.tenant()
        let unitPath = dir + "/units/" + MountUnits.unitName(forPath: t.home(c))
        let wantsPath = dir + "/units/local-fs.target.d/desa-\(t.code).conf"

        func managed(_ tenant: Tenant) throws -> [ManagedFile] {
            var d = DesiredState(config: c, renderer: try Renderer(config: c), tenants: [tenant], aliases: [:], webGID: 33, webUID: 33, now: Date())
            d.set(QuotasCapability.self, .init(rows: [:]))
            let observer = SystemObserver(users: Users(runner: SystemProcessRunner(), passwdFile: "/etc/passwd", sysusersFile: c.sysusersFile))
            let steps = try QuotasCapability().plan(d, try QuotasCapability().observe(d, observer)).steps
            return steps.compactMap { if case .managed(let m) = $0.effect { return m }; return nil }
        }

        let first = try managed(t)
        #expect(first.map(\.path).sorted() == [unitPath, wantsPath].sorted())
        #expect(first.allSatisfy { $0.service == "systemd" })
        let unit = try #require(first.first { $0.path == unitPath }?.content)
        #expect(unit.contains("What=\(ImageBackend.imagePath(t, c))\n") && unit.contains("Where=\(t.home(c))\n"))
        #expect(unit.contains("Options=loop,nodev,nosuid,noatime,noinit_itable\n"))
        #expect(first.first { $0.path == wantsPath }?.content?.contains("Wants=\(MountUnits.unitName(forPath: t.home(c)))\n") == true)

        // systemd's own reading of the files, as written.
        try FileManager.default.createDirectory(atPath: dir + "/units/local-fs.target.d", withIntermediateDirectories: true)
        for m in first { try m.content!.write(toFile: m.path, atomically: true, encoding: .utf8) }
        try FileManager.default.createDirectory(atPath: t.home(c), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: c.quotaImageDir, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: ImageBackend.imagePath(t, c), contents: Data())
        let verify = try SystemProcessRunner().run(["/usr/bin/systemd-analyze", "verify", "--man=no", unitPath])
        #expect(verify.ok && !verify.stderr.contains(unitPath), "\(verify.stdout)\(verify.stderr)")

        #expect(try managed(t).isEmpty, "written, the plan has nothing more to do")

        // Someone else's unit at the tenant's name is never overwritten.
        try "[Mount]\nWhat=/dev/sdb1\nWhere=\(t.home(c))\n".write(toFile: unitPath, atomically: true, encoding: .utf8)
        var d = DesiredState(config: c, renderer: try Renderer(config: c), tenants: [t], aliases: [:], webGID: 33, webUID: 33, now: Date())
        d.set(QuotasCapability.self, .init(rows: [:]))
        var out = CapabilityPlan()
        MountUnits.plan(d, MountUnits.observe(c), into: &out)
        #expect(out.steps.contains { if case .fail(let why) = $0.effect { return why.contains(unitPath) }; return false })
        for m in first { try m.content!.write(toFile: m.path, atomically: true, encoding: .utf8) }

        // Deleted: both files go.
        t.desired = .deleted
        let removed = try managed(t)
        #expect(removed.map(\.path).sorted() == [unitPath, wantsPath].sorted() && removed.allSatisfy { $0.content == nil })

        // A sandbox has no units: apply mounts the images.
        c.mode = .sandbox
        t.desired = .active
        var sd = DesiredState(config: c, renderer: try Renderer(config: c), tenants: [t], aliases: [:], webGID: 33, webUID: 33, now: Date())
        sd.set(QuotasCapability.self, .init(rows: [:]))
        let observer = SystemObserver(users: Users(runner: SystemProcessRunner(), passwdFile: "/etc/passwd", sysusersFile: c.sysusersFile))
        let sandboxSteps = try QuotasCapability().plan(sd, try QuotasCapability().observe(sd, observer)).steps
        #expect(!sandboxSteps.contains { if case .managed = $0.effect { return true }; return false })
    }
}
