import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A plain-HTTP server in the test process for answers a real CA never gives (garbage,
/// truncated bodies, rate limits) and for an ARI endpoint pebble 2.4.0 lacks. One request
/// per connection (`Connection: close`); `handler` decides each answer.
final class FakeHTTPServer: Sendable {
    struct Request: Sendable {
        var method: String
        var path: String
        var headers: [String: String]   // lower-case names
        var body: [UInt8]
    }

    enum Reply: Sendable {
        case http(status: Int, headers: [String: String], body: String)
        /// These bytes exactly, then the connection closes.
        case raw(String)

        static func json(_ status: Int, _ body: String, headers: [String: String] = [:]) -> Reply {
            .http(status: status, headers: ["Content-Type": "application/json"].merging(headers) { $1 }, body: body)
        }
    }

    let port: Int
    var base: String { "http://127.0.0.1:\(port)" }
    private let server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>
    private let task: Task<Void, Never>
    private let seen: NIOLockedValueBox<[Request]>

    /// Every request answered so far.
    var requests: [Request] { seen.withLockedValue { $0 } }

    private init(port: Int, server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>,
                 task: Task<Void, Never>, seen: NIOLockedValueBox<[Request]>) {
        self.port = port; self.server = server; self.task = task; self.seen = seen
    }

    static func start(port: Int, handler: @escaping @Sendable (Request) async -> Reply) async throws -> FakeHTTPServer {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        let seen = NIOLockedValueBox<[Request]>([])
        let task = Task<Void, Never> {
            _ = try? await server.executeThenClose { connections in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await connection in connections {
                        group.addTask {
                            try? await serve(connection, handler: handler) { r in seen.withLockedValue { $0.append(r) } }
                        }
                    }
                }
            }
        }
        return FakeHTTPServer(port: port, server: server, task: task, seen: seen)
    }

    /// Stops listening (usable from `defer`); connections in progress finish on their own.
    func close() {
        server.channel.close(promise: nil)
    }

    func stop() async {
        try? await server.channel.close()
        await task.value
    }

    private static func serve(_ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>,
                              handler: @Sendable (Request) async -> Reply,
                              record: @Sendable (Request) -> Void) async throws {
        try await connection.executeThenClose { inbound, outbound in
            var data: [UInt8] = []
            for try await chunk in inbound {
                data += chunk.readableBytesView
                guard let request = parse(data) else { continue }
                record(request)
                let bytes: [UInt8]
                switch await handler(request) {
                case .raw(let text):
                    bytes = Array(text.utf8)
                case .http(let status, let headers, let body):
                    var head = "HTTP/1.1 \(status) \(status < 400 ? "OK" : "Error")\r\n"
                    for (k, v) in headers.sorted(by: { $0.key < $1.key }) { head += "\(k): \(v)\r\n" }
                    head += "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n"
                    bytes = Array(head.utf8) + (request.method == "HEAD" ? [] : Array(body.utf8))
                }
                try await outbound.write(ByteBuffer(bytes: bytes))
                return
            }
        }
    }

    /// A complete request in `data`, or nil while more is needed.
    private static func parse(_ data: [UInt8]) -> Request? {
        let sep: [UInt8] = [13, 10, 13, 10]
        guard let end = (0...(max(0, data.count - 4))).first(where: { data.count >= 4 && Array(data[$0..<$0 + 4]) == sep }) else { return nil }
        let head = String(decoding: data[..<end], as: UTF8.self).components(separatedBy: "\r\n")
        let first = head[0].split(separator: " ")
        guard first.count >= 2 else { return nil }
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let length = Int(headers["content-length"] ?? "0") ?? 0
        let bodyStart = end + 4
        guard data.count >= bodyStart + length else { return nil }
        return Request(method: String(first[0]), path: String(first[1]), headers: headers,
                       body: Array(data[bodyStart..<bodyStart + length]))
    }
}
