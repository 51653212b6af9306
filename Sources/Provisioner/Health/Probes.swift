import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import SwiftASN1
import X509

/// What one probe found.
public struct ProbeResult: Sendable, Equatable {
    public enum Outcome: Sendable, Equatable {
        case answered(status: Int)
        case failed(reason: String)
    }
    public var outcome: Outcome
    /// The first `HealthProbes.bodyLimit` bytes of the body (for FPM's ping: "pong").
    public var body: String
    public var elapsed: Duration
    /// HTTPS only: the served leaf certificate's notAfter, when a handshake got that far.
    public var peerNotAfter: Date?

    public init(outcome: Outcome, body: String = "", elapsed: Duration, peerNotAfter: Date? = nil) {
        self.outcome = outcome; self.body = body; self.elapsed = elapsed; self.peerNotAfter = peerNotAfter
    }

    /// The status, when an answer came.
    public var status: Int? { if case .answered(let s) = outcome { s } else { nil } }
    /// The reason, when none came.
    public var reason: String? { if case .failed(let r) = outcome { r } else { nil } }
}

/// Health probes on SwiftNIO channels: no blocking socket, no sleeping thread; each probe
/// is one channel, closed when the probe ends, however it ends. One timeout covers a
/// whole probe (connect, TLS, request, answer); a probe's memory is bounded by
/// `bodyLimit` (the rest of a body is dropped unread, the channel closed).
public final class HealthProbes: Sendable {
    public static let bodyLimit = 4096
    /// How long loaded trust roots are reused before the files are read again.
    static let trustRootsTTL: Duration = .seconds(60)

    let group: any EventLoopGroup
    public let timeout: Duration
    /// One client context for every probe: certificates are checked by `verify`, against
    /// the trust roots of each probe (cached per set of files in `trust`).
    private let tlsContext: Result<NIOSSLContext, any Error>
    private let trust = NIOLockedValueBox<[[String]: TrustEntry]>([:])
    /// Plain-HTTP connections kept between probes of the same address.
    let connections = ProbeConnections()

    private struct TrustEntry {
        var roots: Task<CertificateStore, any Error>
        var loaded: ContinuousClock.Instant
    }

    public init(group: any EventLoopGroup, timeout: Duration) {
        self.group = group
        self.timeout = timeout
        var c = TLSConfiguration.makeClientConfiguration()
        // Replaced by the verification callback each probe installs (it needs a mode other than .none).
        c.certificateVerification = .fullVerification
        c.trustRoots = .certificates([])
        c.minimumTLSVersion = .tlsv12
        tlsContext = Result { try NIOSSLContext(configuration: c) }
    }

    deinit {
        // Whoever made the probes closes the idle connections (`closeIdle`); these are
        // what a caller that did not left behind.
        Task { [connections] in await connections.closeAll() }
    }

    /// GET `path` with `Host: host` on `address`, over HTTP/1.1. The connection is kept for
    /// the next probe of the same address when the answer ends cleanly and the server does
    /// not say `Connection: close`; a kept connection that the server closed meanwhile
    /// (an nginx reload ends idle ones) is given up and the probe made once more on a new one.
    public func http(_ address: ProbeAddress, host: String, path: String = "/") async -> ProbeResult {
        let start = ContinuousClock.now
        let key = address.display
        let head = Self.head(host: host, path: path, keepAlive: true)
        if let kept = connections.take(key) {
            connections.count(opened: false)
            let f = await again(kept, head: head)
            if !f.retry { return ProbeResult(outcome: f.outcome, body: f.body, elapsed: ContinuousClock.now - start) }
        }
        connections.count(opened: true)
        let finished = await run(connect: { try Self.connect($0, address) }, describe: key) { [connections] channel, state in
            try channel.pipeline.syncOperations.addHTTPClientHandlers()
            try channel.pipeline.syncOperations.addHandler(HTTPProbeHandler(state: state, head: head, tls: nil, keep: (connections, key)))
        }
        return ProbeResult(outcome: finished.outcome, body: finished.body, elapsed: ContinuousClock.now - start)
    }

    /// Closes the connections kept for further probes: at the end of a sweep, so none
    /// waits for the server's keep-alive timeout.
    public func closeIdle() async { await connections.closeAll() }

    /// Connections the plain-HTTP probes opened, and how many probes used a kept one.
    public var connectionStats: (opened: Int, reused: Int) { connections.stats }

    /// The same over TLS: SNI `host`, the chain verified against `trustRoots` (PEM files;
    /// none: the system's roots) and the name. A certificate that fails is `.failed` with the
    /// reason: expired, not covering the name, or issued by a CA not trusted.
    public func https(_ address: ProbeAddress, host: String, trustRoots: [String], path: String = "/") async -> ProbeResult {
        let start = ContinuousClock.now
        let context: NIOSSLContext
        let roots: CertificateStore
        do {
            context = try tlsContext.get()
            roots = try await trustStore(trustRoots)
        } catch {
            return ProbeResult(outcome: .failed(reason: Self.short(error)), elapsed: ContinuousClock.now - start)
        }
        let seen = NIOLockedValueBox(TLSObservation())
        let sni = Self.isIPAddress(host) ? nil : host
        let finished = await run(connect: { try Self.connect($0, address) }, describe: address.display) { channel, state in
            // Called on the event loop once the server's certificates are in; checked off it.
            let callback: NIOSSLCustomVerificationCallback = { certificates, promise in
                let ders = certificates.compactMap { try? $0.toDERBytes() }
                Task {
                    let v = await Self.verify(chain: ders, host: host, roots: roots, now: Date())
                    seen.withLockedValue { $0 = v }
                    promise.succeed(v.reason == nil ? .certificateVerified : .failed)
                }
            }
            try channel.pipeline.syncOperations.addHandler(
                try NIOSSLClientHandler(context: context, serverHostname: sni, customVerificationCallback: callback))
            try channel.pipeline.syncOperations.addHTTPClientHandlers()
            try channel.pipeline.syncOperations.addHandler(HTTPProbeHandler(state: state, head: Self.head(host: host, path: path, keepAlive: false),
                                                                            tls: seen, keep: nil))
        }
        return ProbeResult(outcome: finished.outcome, body: finished.body, elapsed: ContinuousClock.now - start,
                           peerNotAfter: seen.withLockedValue { $0.notAfter })
    }

    /// A FastCGI GET of `path` on a php-fpm pool's Unix socket: for the pool's ping path
    /// (`PoolsCapability.pingPath`), `answered(status: 200)` with body "pong" when it is alive.
    public func fpmPing(socket: String, path: String) async -> ProbeResult {
        let start = ContinuousClock.now
        let finished = await run(connect: { $0.connect(unixDomainSocketPath: socket) }, describe: socket, unixSocket: socket) { channel, state in
            try channel.pipeline.syncOperations.addHandler(FastCGIProbeHandler(state: state, path: path))
        }
        return ProbeResult(outcome: finished.outcome, body: finished.body, elapsed: ContinuousClock.now - start)
    }

    // MARK: one probe's channel

    struct Finished: Sendable {
        var outcome: ProbeResult.Outcome
        var body: String = ""
        /// A kept connection closed before any answer: the server had closed it; the probe
        /// is made again on a new connection.
        var retry = false
    }

    /// The next probe on a kept connection, with its own deadline on the connection's loop.
    private func again(_ kept: ProbeConnections.Idle, head: HTTPRequestHead) async -> Finished {
        let loop = kept.channel.eventLoop
        let limit = TimeAmount.nanoseconds(Self.nanoseconds(timeout))
        let timeoutReason = "no answer within " + Self.seconds(timeout)
        let future: EventLoopFuture<Finished> = loop.flatSubmit {
            let state = ProbeState(promise: loop.makePromise(of: Finished.self), timeoutReason: timeoutReason)
            let bound = NIOLoopBound(state, eventLoop: loop)
            state.channel = kept.channel
            state.timer = loop.scheduleTask(in: limit) { bound.value.timedOut() }
            kept.handler.value.start(state, head: head)
            return state.promise.futureResult
        }
        do {
            return try await future.get()
        } catch {
            return Finished(outcome: .failed(reason: Self.short(error)))
        }
    }

    /// Sets up one channel on one event loop, with the probe's deadline on that loop: when it
    /// passes, the probe fails and the channel (connecting or connected) is closed.
    private func run(connect: @escaping @Sendable (ClientBootstrap) throws -> EventLoopFuture<any Channel>, describe target: String,
                     unixSocket: String? = nil,
                     handlers: @escaping @Sendable (any Channel, ProbeState) throws -> Void) async -> Finished {
        let loop = group.next()
        let limit = TimeAmount.nanoseconds(Self.nanoseconds(timeout))
        let timeoutReason = "no answer within " + Self.seconds(timeout)
        let future: EventLoopFuture<Finished> = loop.flatSubmit {
            let state = ProbeState(promise: loop.makePromise(of: Finished.self), timeoutReason: timeoutReason)
            let bound = NIOLoopBound(state, eventLoop: loop)
            state.timer = loop.scheduleTask(in: limit) { bound.value.timedOut() }
            let bootstrap = ClientBootstrap(group: loop)
                .connectTimeout(limit + .seconds(1))
                .channelInitializer { channel in
                    let state = bound.value
                    state.channel = channel
                    if state.done { return channel.eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel) }
                    do {
                        try handlers(channel, state)
                        return channel.eventLoop.makeSucceededVoidFuture()
                    } catch {
                        return channel.eventLoop.makeFailedFuture(error)
                    }
                }
            do {
                try connect(bootstrap).hop(to: loop).whenComplete { result in
                    switch result {
                    case .failure(let error):
                        bound.value.finish(.init(outcome: .failed(reason: Self.describe(error, target: target, unixSocket: unixSocket))))
                    case .success(let channel):
                        if bound.value.done { channel.close(promise: nil) }
                    }
                }
            } catch {
                state.finish(.init(outcome: .failed(reason: Self.describe(error, target: target, unixSocket: unixSocket))))
            }
            return state.promise.futureResult
        }
        do {
            return try await future.get()
        } catch {
            return Finished(outcome: .failed(reason: Self.short(error)))
        }
    }

    private static func connect(_ b: ClientBootstrap, _ a: ProbeAddress) throws -> EventLoopFuture<any Channel> {
        if let ip = try? SocketAddress(ipAddress: a.host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port: Int(a.port)) {
            return b.connect(to: ip)
        }
        return b.connect(host: a.host, port: Int(a.port))
    }

    private static func head(host: String, path: String, keepAlive: Bool) -> HTTPRequestHead {
        var headers: HTTPHeaders = ["Host": host, "User-Agent": "desa-probe", "Accept": "*/*"]
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        return HTTPRequestHead(version: .http1_1, method: .GET, uri: path.isEmpty ? "/" : path, headers: headers)
    }

    // MARK: trust roots and verification

    /// The roots of one set of PEM files, read off the cooperative pool, shared by the probes
    /// that name the same set and reread after `trustRootsTTL`; none: the system's.
    func trustStore(_ files: [String]) async throws -> CertificateStore {
        if files.isEmpty { return CertificateStore.systemTrustRoots }
        let now = ContinuousClock.now
        let task = trust.withLockedValue { cache -> Task<CertificateStore, any Error> in
            if let e = cache[files], now - e.loaded < Self.trustRootsTTL { return e.roots }
            let t = Task { try await NIOThreadPool.singleton.runIfActive { try Self.loadRoots(files) } }
            cache[files] = TrustEntry(roots: t, loaded: now)
            return t
        }
        do {
            return try await task.value
        } catch {
            trust.withLockedValue { cache in if cache[files]?.loaded == now { cache[files] = nil } }
            throw error
        }
    }

    static func loadRoots(_ files: [String]) throws -> CertificateStore {
        var roots: [Certificate] = []
        for f in files {
            guard let text = try? String(contentsOfFile: f, encoding: .utf8) else {
                throw DesaError(.system, "TLS: cannot read trust roots \(f)")
            }
            let pems = (try? PEMDocument.parseMultiple(pemString: text)) ?? []
            let certs = pems.filter { $0.discriminator == "CERTIFICATE" }.compactMap { try? Certificate(pemDocument: $0) }
            guard !certs.isEmpty else { throw DesaError(.system, "TLS: no certificate in trust roots \(f)") }
            roots += certs
        }
        return CertificateStore(roots)
    }

    struct TLSObservation: Sendable {
        var reason: String?
        var notAfter: Date?
    }

    /// Checks a served chain (leaf first) as a browser would: to one of `roots`, every
    /// certificate in its validity period, the leaf naming `host`. The reason names the
    /// first thing wrong.
    static func verify(chain: [[UInt8]], host: String, roots: CertificateStore, now: Date) async -> TLSObservation {
        guard let first = chain.first, let leaf = try? Certificate(derEncoded: first) else {
            return TLSObservation(reason: "TLS: the server sent no readable certificate")
        }
        var seen = TLSObservation(notAfter: leaf.notValidAfter)
        let intermediates = CertificateStore(chain.dropFirst().compactMap { try? Certificate(derEncoded: $0) })
        let ip = isIPAddress(host)
        var verifier = Verifier(rootCertificates: roots) {
            RFC5280Policy()
            ServerIdentityPolicy(serverHostname: ip ? nil : host, serverIP: ip ? host : nil)
        }
        switch await verifier.validate(leaf: leaf, intermediates: intermediates) {
        case .validCertificate:
            return seen
        case .couldNotValidate(let failures):
            let reasons = failures.map { String(describing: $0.policyFailureReason) }
            if now > leaf.notValidAfter {
                seen.reason = "TLS: certificate expired"
            } else if now < leaf.notValidBefore {
                seen.reason = "TLS: certificate not valid yet"
            } else if failures.isEmpty {
                seen.reason = "TLS: certificate issuer not trusted (\(commonName(leaf.issuer)))"
            } else if reasons.contains(where: { $0.contains("has expired") }) {
                seen.reason = "TLS: a certificate of the chain expired"
            } else if reasons.contains(where: { $0.contains("SAN") || $0.contains("ommon name") }) {
                seen.reason = "TLS: certificate does not cover \(host)"
            } else {
                seen.reason = "TLS: certificate rejected: " + String((reasons.first ?? "").prefix(160))
            }
            return seen
        }
    }

    static func commonName(_ name: DistinguishedName) -> String {
        for rdn in name {
            for attr in rdn where attr.type == ASN1ObjectIdentifier.RDNAttributeType.commonName {
                return String(describing: attr.value)
            }
        }
        return String(describing: name)
    }

    static func isIPAddress(_ s: String) -> Bool {
        (try? SocketAddress(ipAddress: s.trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port: 0)) != nil
    }

    // MARK: reasons

    /// A short, human reason for an error of the channel.
    static func describe(_ error: any Error, target: String, unixSocket: String? = nil) -> String {
        if let e = error as? NIOConnectionError {
            if let inner = e.connectionErrors.first?.error { return describe(inner, target: target, unixSocket: unixSocket) }
            return "cannot resolve \(e.host)"
        }
        if let e = error as? IOError {
            let at = unixSocket.map { ": " + $0 } ?? ""
            switch e.errnoCode {
            case ECONNREFUSED: return "connection refused" + at
            case ENOENT where unixSocket != nil: return "socket missing" + at
            case EACCES, EPERM: return "permission denied" + at
            case ECONNRESET, EPIPE: return "connection reset"
            case ENETUNREACH, EHOSTUNREACH: return "\(target) unreachable"
            case ETIMEDOUT: return "connect to \(target) timed out"
            default: return "cannot connect to \(target): " + String(cString: strerror(e.errnoCode))
            }
        }
        if let e = error as? ChannelError {
            switch e {
            case .connectTimeout: return "connect to \(target) timed out"
            case .ioOnClosedChannel, .alreadyClosed, .eof, .outputClosed, .inputClosed: return "connection closed before an answer"
            default: return "channel: \(e)"
            }
        }
        if let e = error as? SocketAddressError, case .unixDomainSocketPathTooLong = e { return "socket path too long: \(target)" }
        if error is HTTPParserError { return "malformed HTTP answer" }
        if let e = error as? FastCGI.ProtocolError { return e.message }
        if let e = error as? NIOSSLError {
            switch e {
            case .uncleanShutdown: return "TLS: connection closed during the handshake"
            case .handshakeFailed(let inner): return "TLS: handshake failed (\(shortTLS(inner)))"
            default: return "TLS: \(e)"
            }
        }
        if let e = error as? NIOSSLExtraError { return "TLS: \(e)" }
        return short(error)
    }

    /// BoringSSL's error stack, shortened to its reason words ("tlsv1 alert internal error").
    static func shortTLS(_ e: BoringSSLError) -> String {
        let text = String(describing: e)
        if let r = text.range(of: #"OPENSSL_internal:([A-Z0-9_]+)"#, options: .regularExpression) {
            return text[r].dropFirst("OPENSSL_internal:".count).replacingOccurrences(of: "_", with: " ").lowercased()
        }
        return String(text.prefix(120))
    }

    static func short(_ error: any Error) -> String {
        if let e = error as? DesaError { return e.message }
        return String(String(describing: error).prefix(160))
    }

    static func nanoseconds(_ d: Duration) -> Int64 {
        let c = d.components
        return c.seconds * 1_000_000_000 + c.attoseconds / 1_000_000_000
    }

    /// "3 s", "0.5 s".
    static func seconds(_ d: Duration) -> String {
        let s = Double(nanoseconds(d)) / 1e9
        return s == s.rounded() ? "\(Int(s)) s" : String(format: "%.1f s", s)
    }
}

extension ProbeAddress {
    var display: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// One probe's progress, touched only on its event loop: the channel, the deadline and
/// the one completion.
final class ProbeState {
    let promise: EventLoopPromise<HealthProbes.Finished>
    let timeoutReason: String
    var channel: (any Channel)?
    var timer: Scheduled<Void>?
    private(set) var done = false
    /// Set once an answer started (a status line or FastCGI headers), for the timeout's wording.
    var answering = false

    init(promise: EventLoopPromise<HealthProbes.Finished>, timeoutReason: String) {
        self.promise = promise
        self.timeoutReason = timeoutReason
    }

    func timedOut() {
        finish(.init(outcome: .failed(reason: answering ? timeoutReason.replacingOccurrences(of: "no answer", with: "answer unfinished") : timeoutReason)))
    }

    /// The first call decides the result; the channel is closed and the caller resumed
    /// once it is, unless `keepOpen` (it goes back to the kept connections).
    func finish(_ f: HealthProbes.Finished, keepOpen: Bool = false) {
        guard !done else { return }
        done = true
        timer?.cancel()
        let p = promise
        if keepOpen {
            p.succeed(f)
        } else if let channel {
            channel.close(promise: nil)
            channel.closeFuture.whenComplete { _ in p.succeed(f) }
        } else {
            p.succeed(f)
        }
    }
}

/// Sends a GET and reads the answer's status and the start of its body. With `keep`, the
/// connection goes back to the kept ones after an answer that ended cleanly, and `start`
/// sends the next probe's GET on it.
final class HTTPProbeHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private var state: ProbeState
    private var head: HTTPRequestHead
    private let tls: NIOLockedValueBox<HealthProbes.TLSObservation>?
    private let keep: (pool: ProbeConnections, key: String)?
    private var context: ChannelHandlerContext?
    private var status: Int?
    private var keepAlive = false
    private var body = ByteBuffer()
    /// This probe uses a kept connection: closed before any answer, the server had closed it.
    private var reused = false

    init(state: ProbeState, head: HTTPRequestHead, tls: NIOLockedValueBox<HealthProbes.TLSObservation>?,
         keep: (pool: ProbeConnections, key: String)?) {
        self.state = state; self.head = head; self.tls = tls; self.keep = keep
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelActive(context: ChannelHandlerContext) {
        // Over TLS the TLS handler holds these until the handshake is done.
        send(context)
        context.fireChannelActive()
    }

    /// The next probe on this kept connection; on its event loop.
    func start(_ next: ProbeState, head: HTTPRequestHead) {
        state = next
        self.head = head
        status = nil
        keepAlive = false
        body.clear()
        reused = true
        guard let context, context.channel.isActive else {
            next.finish(.init(outcome: .failed(reason: "connection closed before an answer"), retry: true))
            return
        }
        send(context)
    }

    private func send(_ context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // What comes after the probe ended (timed out, or stopped at the body limit) is dropped.
        guard !state.done else { return }
        switch unwrapInboundIn(data) {
        case .head(let h):
            let code = Int(h.status.code)
            if (100..<200).contains(code) && code != 101 { return }
            status = code
            keepAlive = h.isKeepAlive
            state.answering = true
        case .body(var chunk):
            let take = min(chunk.readableBytes, HealthProbes.bodyLimit - body.readableBytes)
            if take > 0, var slice = chunk.readSlice(length: take) { body.writeBuffer(&slice) }
            // The rest is not read: the connection closes rather than carry it.
            if body.readableBytes >= HealthProbes.bodyLimit { answered(reusable: false) }
        case .end:
            answered(reusable: keepAlive)
        }
    }

    private func answered(reusable: Bool) {
        guard let status, !state.done else { return }
        let finished = HealthProbes.Finished(outcome: .answered(status: status), body: String(buffer: body))
        if reusable, let keep, let context {
            // Back first, so the probe that follows this one finds it; a probe that takes it
            // from another thread starts on this loop, after this.
            keep.pool.put(keep.key, .init(channel: context.channel, handler: NIOLoopBound(self, eventLoop: context.eventLoop)))
            state.finish(finished, keepOpen: true)
        } else {
            state.finish(finished)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let keep { keep.pool.remove(keep.key, context.channel) }
        if status != nil {
            answered(reusable: false)
        } else {
            state.finish(.init(outcome: .failed(reason: tlsReason() ?? "connection closed before an answer"), retry: reused))
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // An idle kept connection: whatever went wrong, it is closed and forgotten.
        if state.done { context.close(promise: nil); return }
        if status != nil { answered(reusable: false); return }
        let reason: String
        if let e = error as? NIOSSLError, case .handshakeFailed = e, let r = tlsReason() {
            reason = r
        } else {
            reason = HealthProbes.describe(error, target: head.headers["Host"].first ?? "")
        }
        let reset = (error as? IOError).map { [ECONNRESET, EPIPE].contains($0.errnoCode) } ?? false
        state.finish(.init(outcome: .failed(reason: reason), retry: reused && reset))
    }

    private func tlsReason() -> String? { tls?.withLockedValue { $0.reason } }
}

/// Sends one FastCGI request and reads the answer as it streams in, keeping at most the
/// headers and `bodyLimit` bytes of the body.
final class FastCGIProbeHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let state: ProbeState
    private let path: String
    private var reader = FastCGI.RecordReader()
    private var response = FastCGI.ResponseAccumulator(bodyLimit: HealthProbes.bodyLimit)
    /// A partial record header (under 8 bytes) left from the last read.
    private var pending: ByteBuffer?

    init(state: ProbeState, path: String) {
        self.state = state; self.path = path
    }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(FastCGI.request(path: path)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !state.done else { return }
        var buffer = unwrapInboundIn(data)
        if var p = pending { p.writeBuffer(&buffer); buffer = p; pending = nil }
        do {
            try response.consume(try reader.read(&buffer))
        } catch {
            state.finish(.init(outcome: .failed(reason: error.message)))
            return
        }
        if buffer.readableBytes > 0 { pending = ByteBuffer(bytes: buffer.readableBytesView) }
        if response.status != nil { state.answering = true }
        if response.complete { answered() }
    }

    private func answered() {
        guard let status = response.status else {
            let hint = response.stderrHint.isEmpty ? "" : " (\(response.stderrHint))"
            state.finish(.init(outcome: .failed(reason: "FPM ended the request without an answer" + hint)))
            return
        }
        state.finish(.init(outcome: .answered(status: status), body: String(decoding: response.body, as: UTF8.self)))
    }

    func channelInactive(context: ChannelHandlerContext) {
        if response.status != nil || response.ended {
            answered()
        } else {
            state.finish(.init(outcome: .failed(reason: "FPM closed the connection without an answer")))
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        state.finish(.init(outcome: .failed(reason: HealthProbes.describe(error, target: path))))
    }
}
