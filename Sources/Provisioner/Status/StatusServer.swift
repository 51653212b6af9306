import Crypto
import Foundation
import GRDB
import NIOCore
import NIOHTTP1
#if canImport(Glibc)
import Glibc
#endif

/// What desa-agent answers on `[status] listen`: `GET /` the status page, `GET
/// /tenants/SLUG.json` the facts `desactl health SLUG --json` prints, anything else 404;
/// behind HTTP basic auth when `status.auth_file` is set. Read-only.
public enum StatusServer {
    public static func make(_ engine: Engine, group: any EventLoopGroup) throws -> LoopbackHTTPServer {
        try LoopbackHTTPServer(listen: engine.config.status.listen, key: "status.listen", name: "status", why: StatusSettings.why,
                               group: group) { request in
            await answer(engine, request)
        }
    }

    static let realm = "Basic realm=\"desa status\", charset=\"UTF-8\""

    public static func answer(_ engine: Engine, _ request: HTTPRequestInfo) async -> HTTPAnswer {
        guard request.method == .GET || request.method == .HEAD else {
            return HTTPAnswer(.methodNotAllowed, "read-only: GET only\n", headers: [("Allow", "GET, HEAD")])
        }
        if let file = engine.config.status.authFile {
            switch StatusAuth.check(file: file, header: request.headers["authorization"].first) {
            case .allowed: break
            case .denied:
                return HTTPAnswer(.unauthorized, "sign in to see the status page\n", headers: [("WWW-Authenticate", realm)])
            case .unusable(let why):
                engine.logger.error("status: \(why)")
                return HTTPAnswer(.internalServerError, "status.auth_file cannot be used; the agent's log says why\n")
            }
        }
        let secure: [(String, String)] = [("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"),
                                          ("X-Frame-Options", "DENY")]
        do {
            if request.path == "/" || request.path == "/index.html" {
                let (html, policy) = try await BlockingThread.run("status page") {
                    let r = try engine.renderer()
                    return (try StatusPage.load(engine).render(r, links: true), try StatusPage.policy(r))
                }
                return HTTPAnswer(.ok, html, contentType: "text/html; charset=utf-8", headers: secure + [("Content-Security-Policy", policy)])
            }
            if request.path.hasPrefix("/tenants/"), request.path.hasSuffix(".json") {
                let slug = String(request.path.dropFirst("/tenants/".count).dropLast(".json".count))
                guard (try? Names.validateSlug(slug)) != nil else { return HTTPAnswer(.notFound, "no such village\n") }
                let json = try await BlockingThread.run("status json") { () -> String? in
                    guard let code = try engine.store.queue.read({ db in
                        try Tenant.filter(Column("slug") == slug).filter(Column("status") != Tenant.Status.deleted.rawValue).fetchOne(db)?.code
                    }) else { return nil }
                    let home = engine.config.webRoot + "/"
                    return try engine.healthReport().redacted(home: home).json(code: code).serialized(pretty: true) + "\n"
                }
                guard let json else { return HTTPAnswer(.notFound, "no such village\n") }
                return HTTPAnswer(.ok, json, contentType: "application/json", headers: secure)
            }
            return HTTPAnswer(.notFound, "not found; the status page is at /\n")
        } catch {
            engine.logger.error("status: \(Applier.message(error))")
            return HTTPAnswer(.internalServerError, "the status page could not be made; the agent's log says why\n")
        }
    }
}

/// HTTP basic auth from a file of `user:password` lines (blank lines and `#` comments
/// ignored), root's and readable by root alone, read at each request so that a change
/// takes effect at once. Passwords are compared by their SHA-256, in constant time.
public enum StatusAuth {
    public enum Verdict: Equatable { case allowed, denied, unusable(String) }

    public static func check(file: String, header: String?) -> Verdict {
        let lines: [Substring]
        switch read(file) {
        case .failure(let why): return .unusable(why.message)
        case .success(let text): lines = text.split(whereSeparator: \.isNewline).filter { !$0.isEmpty && !$0.hasPrefix("#") }
        }
        guard let header, header.lowercased().hasPrefix("basic "),
              let decoded = Data(base64Encoded: String(header.dropFirst(6)).trimmingCharacters(in: .whitespaces)),
              let given = String(data: decoded, encoding: .utf8) else { return .denied }
        let mine = SHA256.hash(data: Data(given.utf8))
        var found = false
        for line in lines where line.contains(":") {
            // Every line is compared, so the time says nothing of which matched.
            if equal(SHA256.hash(data: Data(line.utf8)), mine) { found = true }
        }
        return found ? .allowed : .denied
    }

    static func equal(_ a: SHA256.Digest, _ b: SHA256.Digest) -> Bool {
        var diff: UInt8 = 0
        for (x, y) in zip(a, b) { diff |= x ^ y }
        return diff == 0
    }

    static func read(_ path: String) -> Result<String, DesaError> {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return .failure(DesaError(.config, "status.auth_file \(path): \(String(cString: strerror(errno)))")) }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            return .failure(DesaError(.config, "status.auth_file \(path) is not a regular file"))
        }
        guard st.st_uid == 0, st.st_mode & 0o077 == 0 else {
            return .failure(DesaError(.config, String(format: "status.auth_file %@ must be root's and 0600 (it is uid %d, mode %o)", path,
                                                      Int(st.st_uid), Int(st.st_mode & 0o777))))
        }
        guard st.st_size < 1 << 20 else { return .failure(DesaError(.config, "status.auth_file \(path) is over 1 MiB")) }
        return .success(String(decoding: handle.readDataToEndOfFile(), as: UTF8.self))
    }
}
