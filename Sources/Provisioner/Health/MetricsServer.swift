import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// A request as a `LoopbackHTTPServer`'s responder sees it.
public struct HTTPRequestInfo: Sendable {
    public var method: HTTPMethod
    /// The path without its query.
    public var path: String
    public var headers: HTTPHeaders
}

/// A responder's answer.
public struct HTTPAnswer: Sendable {
    public var status: HTTPResponseStatus
    public var body: String
    public var contentType: String
    public var headers: [(String, String)]
    public init(_ status: HTTPResponseStatus, _ body: String, contentType: String = "text/plain; charset=utf-8",
                headers: [(String, String)] = []) {
        self.status = status; self.body = body; self.contentType = contentType; self.headers = headers
    }
}

/// The Prometheus endpoint is the first of these servers.
public typealias MetricsServer = LoopbackHTTPServer

/// A small HTTP/1.1 server for what only the server's operators may see: Prometheus's
/// `GET /metrics` (`init(listen:metrics:group:)`), the operators' status page. It listens
/// on a loopback address or on a Unix socket (0660, its directory created 0755 if
/// missing); `MetricsListen` refuses anything else. Everything runs on `group`'s event
/// loops but the responder, which runs as a task; `start` and `stop` only await futures.
///
/// Requests are bounded: a request line and headers of at most 8 KiB, a body of at most
/// 1 KiB (413 and the connection closed beyond), and a connection idle for 10 seconds is
/// closed.
public final class LoopbackHTTPServer: Sendable {
    public typealias Responder = @Sendable (HTTPRequestInfo) async -> HTTPAnswer
    public let listen: MetricsListen
    /// For messages: `metrics`, `status`.
    public let name: String
    private let responder: Responder
    private let group: any EventLoopGroup
    private let lock = NSLock()
    /// The listening channel and, for a Unix socket, the inode `stop` removes.
    nonisolated(unsafe) private var server: (channel: any Channel, inode: ino_t?)?
    /// Connections open now, closed by `stop`.
    nonisolated(unsafe) private var connections: [ObjectIdentifier: any Channel] = [:]

    static let maxHeadBytes = 8192
    static let maxBodyBytes = 1024
    static let idleTimeout = TimeAmount.seconds(10)

    /// Validates `listen` (`127.0.0.1:PORT`, `[::1]:PORT`, `unix:/PATH`; port 0: any free
    /// port); throws `DesaError(.config)` naming `key` for an empty, malformed or public address.
    public init(listen: String, key: String, name: String, why: String, group: any EventLoopGroup, responder: @escaping Responder) throws {
        guard let a = try MetricsListen.parse(listen, key: key, why: why) else {
            throw DesaError(.config, "\(key) is empty: \(name) is off, there is nothing to serve")
        }
        self.listen = a
        self.name = name
        self.group = group
        self.responder = responder
    }

    /// Prometheus: `GET /metrics` answers `AgentMetrics.exposition()`, any other path 404,
    /// any other method 405.
    public convenience init(listen: String, metrics: AgentMetrics, group: any EventLoopGroup) throws {
        try self.init(listen: listen, key: "metrics.listen", name: "metrics", why: MetricsListen.metricsWhy, group: group) { r in
            guard r.path == "/metrics" else { return HTTPAnswer(.notFound, "not found; metrics are at /metrics\n") }
            guard r.method == .GET || r.method == .HEAD else {
                return HTTPAnswer(.methodNotAllowed, "only GET /metrics\n", headers: [("Allow", "GET, HEAD")])
            }
            return HTTPAnswer(.ok, metrics.exposition(), contentType: "text/plain; version=0.0.4; charset=utf-8")
        }
    }

    /// Starts listening; returns the bound address (`127.0.0.1:43123`, `[::1]:9464`,
    /// `unix:/run/desa/metrics.sock`).
    public func start() async throws -> String {
        guard (lock.withLock { server == nil }) else {
            throw DesaError(.conflict, "the \(name) server on \(listen) is already started")
        }
        let responder = self.responder
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [weak self] channel in
                self?.track(channel)
                return channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(IdleStateHandler(readTimeout: Self.idleTimeout))
                    try sync.configureHTTPServerPipeline(withErrorHandling: true)
                    try sync.addHandler(LoopbackHTTPHandler(responder: responder))
                }
            }
        switch listen {
        case .tcp(let host, let port):
            let channel: any Channel
            do {
                channel = try await bootstrap.bind(host: host, port: port).get()
            } catch {
                throw DesaError(.system, "\(name): cannot listen on \(listen): \(error)")
            }
            lock.withLock { server = (channel, nil) }
            let bound = channel.localAddress?.port ?? port
            return MetricsListen.tcp(host: host, port: bound).description
        case .unix(let path):
            try Self.prepareSocket(path, name: name, key: "\(name).listen")
            let channel: any Channel
            do {
                channel = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: false).get()
            } catch {
                throw DesaError(.system, "\(name): cannot listen on \(listen): \(error)")
            }
            var st = stat()
            guard chmod(path, 0o660) == 0, lstat(path, &st) == 0 else {
                let why = String(cString: strerror(errno))
                try? await channel.close().get()
                throw DesaError(.system, "\(name): cannot make \(path) 0660: \(why)")
            }
            lock.withLock { server = (channel, st.st_ino) }
            return listen.description
        }
    }

    /// Stops listening, closes open connections and removes the Unix socket file (only if
    /// it is still the socket this server made).
    public func stop() async throws {
        let (s, open) = lock.withLock {
            defer { server = nil; connections = [:] }
            return (server, Array(connections.values))
        }
        guard let s else { return }
        do { try await s.channel.close().get() } catch ChannelError.alreadyClosed {}
        for c in open { try? await c.close().get() }
        if case .unix(let path) = listen, let inode = s.inode {
            var st = stat()
            if lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFSOCK, st.st_ino == inode, unlink(path) != 0, errno != ENOENT {
                throw DesaError(.system, "\(name): cannot remove \(path): \(String(cString: strerror(errno)))")
            }
        }
    }

    private func track(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        lock.withLock { connections[id] = channel }
        channel.closeFuture.whenComplete { [weak self] _ in
            guard let self else { return }
            _ = self.lock.withLock { self.connections.removeValue(forKey: id) }
        }
    }

    /// Makes the socket's directory (0755) if missing and removes a stale socket left by a
    /// dead agent. Never removes anything but a socket nobody listens on, never follows a
    /// link at `path`.
    static func prepareSocket(_ path: String, name: String = "metrics", key: String = "metrics.listen") throws {
        let dir = (path as NSString).deletingLastPathComponent
        var st = stat()
        if stat(dir, &st) != 0 {
            guard errno == ENOENT else {
                throw DesaError(.system, "\(name): cannot read \(dir): \(String(cString: strerror(errno)))")
            }
            do {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o755])
            } catch {
                throw DesaError(.system, "\(name): cannot create \(dir): \(error.localizedDescription)")
            }
            chmod(dir, 0o755)
        } else if st.st_mode & S_IFMT != S_IFDIR {
            throw DesaError(.system, "\(name): \(dir) is not a directory")
        }
        guard lstat(path, &st) == 0 else {
            if errno == ENOENT { return }
            throw DesaError(.system, "\(name): cannot read \(path): \(String(cString: strerror(errno)))")
        }
        guard st.st_mode & S_IFMT == S_IFSOCK else {
            throw DesaError(.system, "\(name): \(path) exists and is not a socket; it is left as it is (remove it, or set another \(key))")
        }
        if isListening(path) {
            throw DesaError(.conflict, "\(name): \(path) is in use by another process (another desa-agent?)")
        }
        guard unlink(path) == 0 || errno == ENOENT else {
            throw DesaError(.system, "\(name): cannot remove the stale socket \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Whether something accepts connections on the Unix socket at `path` (a non-blocking
    /// connect: refused means stale).
    static func isListening(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { return false }
        withUnsafeMutableBytes(of: &addr.sun_path) { buf in
            for (i, b) in bytes.enumerated() { buf[i] = b }
        }
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        return r == 0 || errno == EAGAIN || errno == EINPROGRESS
    }
}

/// One connection's requests, answered in order by the responder.
private final class LoopbackHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let responder: LoopbackHTTPServer.Responder
    private var head: HTTPRequestHead?
    private var bodyBytes = 0
    /// A request was refused for its size: everything after it is ignored until the close.
    private var refused = false

    init(responder: @escaping LoopbackHTTPServer.Responder) { self.responder = responder }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            bodyBytes = 0
            let size = h.uri.utf8.count + h.headers.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 }
            if size > LoopbackHTTPServer.maxHeadBytes {
                refuse(context, .requestHeaderFieldsTooLarge)
            }
        case .body(let chunk):
            bodyBytes += chunk.readableBytes
            if bodyBytes > LoopbackHTTPServer.maxBodyBytes {
                refuse(context, .payloadTooLarge)
            }
        case .end:
            guard let h = head else { return }
            head = nil
            answer(context, h)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    private func answer(_ context: ChannelHandlerContext, _ h: HTTPRequestHead) {
        let path = h.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? h.uri
        let request = HTTPRequestInfo(method: h.method, path: path, headers: h.headers)
        let responder = self.responder
        let promise = context.eventLoop.makePromise(of: HTTPAnswer.self)
        promise.completeWithTask { await responder(request) }
        let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        promise.futureResult.whenSuccess { a in
            let (handler, context) = bound.value
            handler.respond(context, h, a.status, a.body, contentType: a.contentType, extra: a.headers)
        }
    }

    private func refuse(_ context: ChannelHandlerContext, _ status: HTTPResponseStatus) {
        refused = true
        let h = head ?? HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")
        respond(context, h, status, "\(status.reasonPhrase)\n", close: true)
    }

    private func respond(_ context: ChannelHandlerContext, _ request: HTTPRequestHead, _ status: HTTPResponseStatus,
                         _ body: String, contentType: String = "text/plain; charset=utf-8",
                         extra: [(String, String)] = [], close: Bool = false) {
        let keepAlive = request.isKeepAlive && !close
        var headers = HTTPHeaders([("Content-Type", contentType), ("Content-Length", String(body.utf8.count))] + extra)
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        var response = HTTPResponseHead(version: request.version, status: status, headers: headers)
        response.headers.replaceOrAdd(name: "Cache-Control", value: "no-store")
        context.write(wrapOutboundOut(.head(response)), promise: nil)
        if request.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
