import Foundation

/// Managed files, whatever their service (a vhost, a pool, a certificate, a unit):
/// remember the old contents in the rollback journal, write every file, check each
/// service touched; when a checker complains, put the old files back, fail the tenant
/// its complaint names and try again without it (or, when it names nobody, fail every
/// tenant of the batch); then reload each service once, and if a reload fails, put the
/// old files back and reload again.
struct FileTransaction {
    let applier: Applier
    let plan: Plan
    let run: Applier.Run

    var services: ServiceControl { applier.services }
    var progress: ProgressReporting { applier.progress }

    func spec(_ name: String) throws -> ServiceSpec {
        guard let s = plan.services.first(where: { $0.name == name }) else {
            throw DesaError(.config, "the plan changes files of service \(name), which the config does not define")
        }
        return s
    }

    func commit(_ steps: [Step]) throws {
        var changes = steps
        var reloads: [ServiceSpec] = []
        let journal = RollbackJournal(dir: applier.config.rollbackDir)
        while !changes.isEmpty {
            let touched = try Set(changes.compactMap(\.service)).map(spec).sorted()
            // Never change a pool file while php-fpm is still re-reading its pools.
            for s in touched { services.waitUntilSettled(s) }
            let backup = try journal.begin(paths: changes.map(Self.file).map(\.path))
            progress.begin("configs", total: changes.count)
            do { try Self.write(changes) } catch {
                progress.end()
                journal.restore(backup)
                for t in Set(changes.compactMap(\.tenant)) { run.fail(t, Applier.message(error)) }
                changes = []
                break
            }
            progress.advance(changes.count)
            progress.end()
            FaultInjection.point("after-config-writes")
            var failure: (ServiceSpec, String)?
            for s in touched {
                let r = try services.test(s)
                if !r.ok { failure = (s, Self.checkerMessage(r.message)); break }
            }
            guard let (service, message) = failure else { reloads = touched; break }
            journal.restore(backup)
            let reason = "\(service) rejected the new configuration: \(message)"
            if let culprit = Self.culprit(in: message, changes: changes) {
                run.fail(culprit, reason)
                changes.removeAll { $0.tenant == culprit }
            } else {
                // Nobody is named: the batch's tenants fail. The server's own files (the
                // portal's server block) are tried again alone; if they fail alone, the
                // command fails.
                let tenants = Set(changes.compactMap(\.tenant))
                for t in tenants { run.fail(t, reason) }
                if changes.contains(where: { $0.tenant == nil }) {
                    if !tenants.isEmpty {
                        changes.removeAll { $0.tenant != nil }
                        continue
                    }
                    run.phase("check")
                    throw DesaError(.checkFailed, reason)
                }
                changes = []
            }
        }
        run.phase("check")
        if !reloads.isEmpty {
            // systemd first: a new unit or drop-in must be known before an instance starts.
            reloads.sort { ($0.kind == .systemd ? 0 : 1, $0.name) < ($1.kind == .systemd ? 0 : 1, $1.name) }
            let files = changes.map(Self.file)
            let reload = { (s: ServiceSpec, files: [ManagedFile]) throws in
                guard let dir = s.instances else { return try services.reloadOrStart(s) }
                let mine = files.filter { $0.service == s.name }
                let changed = TenantMasters.instances(of: mine, in: dir)
                try services.reloadOrStart(s, instances: changed)
                // The masters' own configuration changed too: every other instance reloads.
                if !(changed.reload.isEmpty && changed.stop.isEmpty), mine.contains(where: { !$0.path.hasPrefix(dir + "/") }) {
                    try services.reloadOrStart(s)
                }
            }
            progress.begin("reload", total: reloads.count)
            let oldWorkers = Dictionary(reloads.filter { $0.kind == .nginx }.map { ($0.name, services.workers($0)) }, uniquingKeysWith: { a, _ in a })
            var reloadError: Error?
            for s in reloads {
                do { try reload(s, files) } catch { reloadError = error; break }
                progress.advance(1)
            }
            let changedTenants = Set(changes.compactMap(\.tenant))
            if let e = reloadError, let backup = journal.pending() {
                journal.restore(backup)
                // As the files are now: a pool put back starts its master again, a pool
                // taken away again stops it.
                let restored = files.map { ManagedFile(path: $0.path, content: access($0.path, F_OK) == 0 ? "" : nil, service: $0.service) }
                for s in reloads { try? reload(s, restored) }
                for t in changedTenants { run.fail(t, Applier.message(e)) }
            } else {
                for s in reloads where s.kind == .nginx && !(oldWorkers[s.name] ?? []).isEmpty {
                    if !services.waitForNewWorkers(s, old: oldWorkers[s.name]!, timeout: max(15, Double(plan.scale) / 200)) {
                        let why = s.errorLog.flatMap(Self.lastEmergency(in:)).map { ": \($0)" } ?? ""
                        for t in changedTenants { run.fail(t, "\(s) did not pick up the new configuration\(why)") }
                    }
                }
            }
            progress.end()
            run.result.reloaded = reloads.map(\.name)
            run.phase("reload")
        }
        // The new files are in place (or restored): nothing is left to roll back.
        journal.clear()
    }

    static func file(_ s: Step) -> ManagedFile {
        if case .managed(let m) = s.effect { return m }
        preconditionFailure("a managed-file step without a managed file")
    }

    static func write(_ changes: [Step]) throws {
        let files = changes.map(file)
        try AtomicFiles.write(files.compactMap { m in m.content.map { FileWrite(path: m.path, content: $0, mode: mode_t(m.mode)) } })
        AtomicFiles.remove(files.filter { $0.content == nil }.map(\.path))
    }

    /// The checker's complaint without timestamps, pids and its closing "test failed" line.
    static func checkerMessage(_ raw: String) -> String {
        let lines = raw.split(separator: "\n").map { line -> String in
            var l = String(line)
            // nginx: "2026/11/24 16:17:39 [emerg] 13974#13974: ..."; php-fpm: "[24-Nov-2026 15:53:15] ERROR: ..."
            if let r = l.range(of: #"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[\w+\] \d+#\d+: "#, options: .regularExpression) { l.removeSubrange(r) }
            if let r = l.range(of: #"^\[[^\]]+\] "#, options: .regularExpression) { l.removeSubrange(r) }
            return l
        }.filter { !$0.hasSuffix("test failed") && !$0.contains("FPM initialization failed") && !$0.hasPrefix("nginx: the configuration file") }
        return lines.joined(separator: "; ")
    }

    /// The last [emerg] or [alert] line of nginx's error log, without its timestamp.
    static func lastEmergency(in path: String) -> String? {
        guard let fd = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? fd.close() }
        let size = (try? fd.seekToEnd()) ?? 0
        try? fd.seek(toOffset: size > 16384 ? size - 16384 : 0)
        let tail = String(decoding: fd.readDataToEndOfFile(), as: UTF8.self)
        guard let line = tail.split(separator: "\n").last(where: { $0.contains("[emerg]") || $0.contains("[alert]") }) else { return nil }
        return checkerMessage(String(line))
    }

    /// Which tenant a checker's message points at: a file it names, or a mark the file's
    /// capability left (a pool's name, a path in the tenant's home).
    static func culprit(in message: String, changes: [Step]) -> String? {
        for c in changes {
            guard let t = c.tenant else { continue }
            let m = file(c)
            if message.contains(m.path + ":") || message.contains(m.path + "\"") || message.contains(m.path + " ") { return t }
            if m.blame.contains(where: { message.contains($0) }) { return t }
        }
        return nil
    }
}

/// Named points where a test build can stop the process (`DESA_TEST_FAULT=POINT:MARKER`:
/// at POINT, create the file MARKER and wait to be killed, or until the test removes
/// MARKER), so a test knows where its kill or its fault landed. Release builds ignore it.
enum FaultInjection {
    static func point(_ name: String) {
        #if DEBUG
        guard let spec = ProcessInfo.processInfo.environment["DESA_TEST_FAULT"], spec.hasPrefix(name + ":") else { return }
        let marker = String(spec.dropFirst(name.count + 1))
        FileManager.default.createFile(atPath: marker, contents: Data("\(getpid())\n".utf8))
        // The test kills the process here, or removes the marker to let it go on.
        for _ in 0..<1200 where FileManager.default.fileExists(atPath: marker) { usleep(100_000) }
        #endif
    }
}
