import Crypto
import Foundation
import Testing
@testable import Provisioner

/// desa in production under a real kernel and a real systemd: Debian's User-Mode Linux kernel
/// boots the container's Debian root with systemd as PID 1 (what nspawn here cannot give:
/// cgroup v2 with the memory, pids and CPU controllers writable, and loop devices). The
/// scripts are in Tests/support/uml: `build-image.sh` makes a base image once, `boot.sh`
/// boots it with a copy-on-write file of the run's own, and each boot runs one guest
/// script, whose `key=value` lines come back here.
@Suite("Under a real kernel and systemd (User-Mode Linux): each tenant's PHP held to its limits, and a reboot brings every village back",
       .serialized, .enabled(if: UMLSystemd.preflight == nil, "\(UMLSystemd.preflight ?? "")"))
struct UMLSystemdTests {
    @Test("masters per tenant: memory, processes and CPU held by the kernel in each tenant's own cgroup while its neighbour serves; a raise applies live; after a reboot systemd alone mounts the quota images and starts each tenant's master with its limits")
    func limitsAndReboot() throws {
        let image = try UMLSystemd.image()
        let run = "/var/tmp/desa-test-uml-systemd-\(getpid())"
        try? FileManager.default.removeItem(atPath: run)
        try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: run) }
        try "DESACTL=\(Support.desactl)\nTEMPLATES=\(Support.templates)\n".write(toFile: run + "/params", atomically: true, encoding: .utf8)

        // First boot: desa installed, two villages created, the first one's PHP pushing.
        let first = try UMLSystemd.boot(image, run: run, guest: "limits-guest.sh")
        let a = "desa3204052001", b = "desa3204052002"
        #expect(first["create_cileunyi-kulon"] == "0" && first["create_cileunyi-wetan"] == "0",
                "\(AtomicFiles.read(run + "/create-cileunyi-kulon.log") ?? "")")
        // Made under one shared master, then switched: the shared master had both pools and
        // served; after apply it has none, and each tenant's own master serves.
        #expect(first["shared_before"] == "2" && first["served_shared_a"] == "200", "\(first)")
        #expect(first["switch"] == "0", "\(AtomicFiles.read(run + "/switch.log") ?? "")")
        #expect(first["active_a"] == "active" && first["active_b"] == "active")
        // The shared master serves none of them; each runs as its user in its own unit's cgroup.
        #expect(first["shared_pools"] == "0")
        #expect(first["who_a"] == "\(a),/desa.slice/desa-tenants.slice/desa-php8.2-fpm@\(a).service", "\(first["who_a"] ?? "")")
        #expect(first["who_b"] == "\(b),/desa.slice/desa-tenants.slice/desa-php8.2-fpm@\(b).service", "\(first["who_b"] ?? "")")
        #expect(first["memory_max_a"] == "\(96 << 20)" && first["pids_max_a"] == "20" && first["cpu_max_a"] == "20000 100000")
        #expect(first["mount_a"]?.hasPrefix("/dev/loop") == true && first["mount_a"]?.hasSuffix(",ext4") == true, "\(first["mount_a"] ?? "")")

        // Memory: 200 MiB in one request against 96 MiB: that worker is killed in A's cgroup;
        // B allocates 40 MiB untouched; A's master goes on and serves the next request.
        #expect(first["mem_a"] == "502", "\(first["mem_a"] ?? "")")
        #expect((Int(first["oom_kill_a"] ?? "") ?? 0) >= 1)
        #expect(first["mem_b"] == "allocated,\(40 << 20)" && first["oom_kill_b"] == "0")
        #expect(first["after_oom_a"] == "200" && first["active_after_oom_a"] == "active")

        // Processes: A asked for 100, the kernel gave its cgroup 20 in all (master and worker
        // among them); B answered meanwhile.
        let started = Int(first["fork_a"]?.replacingOccurrences(of: "started,", with: "") ?? "") ?? -1
        #expect((10...18).contains(started), "\(first["fork_a"] ?? "")")
        #expect(first["pids_current_a"] == "20" && (Int(first["pids_events_a"] ?? "") ?? 0) >= 1)
        #expect(first["during_fork_b"] == "200")

        // CPU: a busy loop at 20% of one core used about that (the kernel throttled it).
        let cpu = Int(first["cpu_percent_a"] ?? "") ?? -1
        #expect((5...35).contains(cpu), "A's busy loop used \(cpu)% of one core")
        #expect((Int(first["throttled_a"] ?? "") ?? 0) > 0)

        // A raise while it serves: the running cgroup, the same master; a bad value: exit 2,
        // nothing changed; the report and config check say what holds.
        #expect(first["quota_set"] == "0" && first["memory_max_a_raised"] == "\(128 << 20)" && first["cpu_max_a_raised"] == "50000 100000")
        #expect(first["same_master_a"] == "yes" && first["after_raise_a"] == "200")
        #expect(first["quota_bad"] == "2" && first["memory_max_a_kept"] == "\(128 << 20)", "\(AtomicFiles.read(run + "/quota-bad.log") ?? "")")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: run + "/report.json"))) as? [[String: Any]])
        let row = try #require(report.first { $0["slug"] as? String == "cileunyi-kulon" })
        #expect(row["memory_limit_bytes"] as? Int == 128 << 20 && row["cpu_limit_percent"] as? Int == 50
                && row["processes_limit"] as? Int == 20 && row["memory_cpu_enforced"] as? Bool == true, "\(row)")
        #expect(Support.read(run + "/config-check.txt").contains("processes, memory and CPU: each tenant's PHP in a php-fpm master of its own"))

        // A master stopped by hand: apply starts it again.
        #expect(first["stopped_a"] == "inactive" && first["apply_restart"] == "0" && first["restarted_a"] == "active"
                && first["restarted_who_a"] == "200", "\(AtomicFiles.read(run + "/apply-restart.log") ?? "")")

        // Suspended: no PHP (its master stopped, its drop-ins and pool gone), the 503 page;
        // resumed: served again. A village created and deleted leaves nothing of its master.
        #expect(first["suspend"] == "0" && first["suspended_b"] == "inactive" && first["suspended_files_b"] == "0", "\(first)")
        #expect(first["suspended_page_b"] == "503")
        #expect(first["resume"] == "0" && first["resumed_b"] == "active" && first["resumed_who_b"] == b)
        #expect(first["create_c"] == "0" && first["active_c"] == "active")
        #expect(first["delete_c"] == "0" && first["deleted_c"] == "inactive" && first["deleted_files_c"] == "0",
                "\(AtomicFiles.read(run + "/delete-cimekar.log") ?? "")")

        // Second boot of the same disk: no desactl runs; systemd brings it all back.
        let second = try UMLSystemd.boot(image, run: run, guest: "reboot-guest.sh")
        for slug in ["cileunyi-kulon", "cileunyi-wetan"] {
            #expect(second["mount_\(slug)"]?.hasPrefix("/dev/loop") == true && second["mount_\(slug)"]?.hasSuffix(",ext4") == true,
                    "\(slug): \(second["mount_\(slug)"] ?? "")")
            #expect(second["mount_unit_\(slug)"] == "active" && second["active_\(slug)"] == "active")
        }
        #expect(second["who_cileunyi-kulon"] == a && second["who_cileunyi-wetan"] == b)
        #expect(second["memory_max_a"] == "\(128 << 20)" && second["failed_units"] == "0")

        // Back to one shared master: it serves both, and nothing of the tenants' masters is left.
        #expect(second["switch_back"] == "0", "\(AtomicFiles.read(run + "/switch-back.log") ?? "")")
        #expect(second["shared_after"] == "2" && second["masters_after"] == "0" && second["tenant_files_after"] == "0", "\(second)")
        #expect(second["shared_who_cileunyi-kulon"] == a && second["shared_who_cileunyi-wetan"] == b, "\(second)")
    }
}

/// Boots Debian's User-Mode Linux kernel with systemd as PID 1 on the container tests' root
/// filesystem (Tests/support/uml).
enum UMLSystemd {
    static let uml = "/usr/bin/linux.uml"
    static let scripts = Support.packageRoot.appendingPathComponent("Tests/support/uml").path
    static let imagePath = "/var/cache/desa-tests/uml-base.img"
    static let runner = SystemProcessRunner()

    static let preflight: String? = {
        if geteuid() != 0 { return "not root" }
        if access(uml, X_OK) != 0 || ((try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/uml/modules")) ?? []).isEmpty {
            return "User-Mode Linux is not installed (\(uml)): scripts/install-deps.sh installs user-mode-linux"
        }
        if access("/usr/sbin/mkfs.ext4", X_OK) != 0 { return "no mkfs.ext4 (e2fsprogs)" }
        if !FileManager.default.fileExists(atPath: "/opt/swift/usr/lib/swift/linux/libswiftCore.so") {
            return "the Swift runtime is not at /opt/swift, which the guest mounts read-only"
        }
        return ContainerHarness.preflight
    }()

    /// The base image, built from the container tests' root filesystem unless one made from
    /// the same root and the same script is there (its stamp beside it says which).
    static func image() throws -> String {
        try ContainerHarness.buildRootfs(.agent)
        let rootfs = ContainerHarness.Image.agent.rootfs
        let stamp = (AtomicFiles.read(rootfs + "/etc/desa-test-rootfs") ?? "") + SHA256.hash(data: Data((AtomicFiles.read(scripts + "/build-image.sh") ?? "").utf8)).map { String(format: "%02x", $0) }.joined() + "\n"
        if FileManager.default.fileExists(atPath: imagePath), AtomicFiles.read(imagePath + ".stamp") == stamp { return imagePath }
        let r = try runner.run(["/bin/bash", scripts + "/build-image.sh", rootfs, imagePath])
        guard r.ok else { throw DesaError.system("build-image.sh failed: \(r.message)") }
        try AtomicFiles.write([FileWrite(path: imagePath + ".stamp", content: stamp, mode: 0o644)])
        return imagePath
    }

    /// Boots `image` writing to `run`'s copy-on-write file (kept: the next boot is a reboot of
    /// the same disk), runs the guest script, and returns its `key=value` lines.
    static func boot(_ image: String, run: String, guest: String) throws -> [String: String] {
        try? FileManager.default.removeItem(atPath: run + "/guest.sh")
        try FileManager.default.copyItem(atPath: scripts + "/" + guest, toPath: run + "/guest.sh")
        let toolchain = "/opt/swift"
        let build = URL(fileURLWithPath: Support.desactl).deletingLastPathComponent().path
        let dirs = [toolchain, Support.packageRoot.path] + (build.hasPrefix(Support.packageRoot.path + "/") ? [] : [build])
        let r = try runner.run(["/usr/bin/env", "MEM=768M", "RO_DIRS=" + dirs.joined(separator: " "),
                                "/bin/bash", scripts + "/boot.sh", image, run, "600"])
        let console = AtomicFiles.read(run + "/console.log") ?? ""
        let journal = AtomicFiles.read(run + "/journal.txt") ?? ""
        guard r.ok else {
            throw DesaError.system("\(guest) under UML: \(r.message)\n--- console (end):\n\(console.suffix(3000))\n--- journal (end):\n\(journal.suffix(5000))")
        }
        var out: [String: String] = [:]
        for line in r.stdout.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            out[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        return out
    }
}
