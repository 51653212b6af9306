import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What decides that a village serves: its pages through the web server, OpenSID's own
/// record of its schema, and its PHP error log.
enum AppGate {
    /// Nil when every path answers 200 through nginx (`nginx.probe`) before `within`
    /// seconds pass; else what the last try answered.
    static func answers(_ e: Engine, _ t: Tenant, paths: [String], within: TimeInterval) -> String? {
        guard let address = ProbeAddress(e.config.nginx.probe) else { return "nginx.probe \(e.config.nginx.probe) is not HOST:PORT" }
        return answers(HTTPProbe(address: address, timeout: 60), host: t.primaryDomain(e.config), paths: paths, within: within, time: e.time)
    }

    /// `final`: an HTTP answer other than 200 is the verdict, not tried again (PHP's
    /// built-in server, once up, answers as the code does); only connecting is retried.
    static func answers(_ probe: HTTPProbe, host: String, paths: [String], within: TimeInterval, time: TimeSource, final: Bool = false) -> String? {
        let deadline = time.deadline(within)
        var last = ""
        var pending = paths
        repeat {
            while let p = pending.first {
                do {
                    let r = try probe.get(host: host, path: p)
                    guard r.status == 200 else {
                        last = "\(p) answered HTTP \(r.status)"
                        if final { return last }
                        break
                    }
                    pending.removeFirst()
                } catch { last = "\(p): " + Applier.message(error); break }
            }
            if pending.isEmpty { return nil }
            time.sleep(0.5)
        } while time.now() < deadline
        return last
    }

    /// The size of a log now, to read what is written after.
    static func logSize(_ path: String) -> UInt64 {
        var st = stat()
        return stat(path, &st) == 0 ? UInt64(st.st_size) : 0
    }

    /// The first fatal error written to `path` (a log root opens, outside the home) since
    /// `offset`, if any.
    static func newFatal(_ path: String, since offset: UInt64) -> String? {
        guard let h = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? h.close() }
        let end = (try? h.seekToEnd()) ?? 0
        guard end > offset else { return nil }
        try? h.seek(toOffset: end - offset > 4 << 20 ? end - (4 << 20) : offset)
        let text = String(decoding: (try? h.readToEnd()) ?? Data(), as: UTF8.self)
        return text.split(whereSeparator: \.isNewline).first { $0.contains("Fatal error") }.map { String($0.prefix(400)) }
    }

    /// PHP's built-in server as the tenant, with its pool's limits, on a free loopback port,
    /// routing every request to `router` (OpenSID's front controller): OpenSID's first run
    /// and its migrations happen in a request, before the site is public again. Its output
    /// (PHP's errors) goes to `log`, a file of root's.
    static func phpServer(_ e: Engine, _ t: Tenant, asTenant: [String], router: String, log: String) throws -> (BackgroundProcess, HTTPProbe) {
        let c = e.config
        let port = try OpenSIDInstaller.freeLoopbackPort()
        let home = t.home(c), publicDir = home + "/public"
        let server = try BackgroundProcess(asTenant + ["/usr/bin/php" + t.php, "-d", "memory_limit=512M", "-d", "max_execution_time=\(c.apps.migrationTimeout)",
                                                      "-d", "open_basedir=" + home + "/:" + c.releaseDir + "/:/usr/share/php/:/dev/null",
                                                      "-d", "session.save_path=" + home + "/sessions", "-d", "sys_temp_dir=" + home + "/tmp",
                                                      "-d", "upload_tmp_dir=" + home + "/tmp", "-d", "log_errors=1", "-d", "display_errors=0",
                                                      "-S", "127.0.0.1:\(port)", "-t", publicDir, publicDir + "/" + router],
                                           cwd: publicDir, logFile: log)
        return (server, HTTPProbe(address: ProbeAddress("127.0.0.1:\(port)")!, timeout: TimeInterval(c.apps.migrationTimeout)))
    }
}
