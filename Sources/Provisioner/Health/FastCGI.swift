import Foundation
import NIOCore

/// The few parts of FastCGI 1.0 a health probe needs: one responder request, and a
/// streaming reader of the records that answer it. The reader never holds a whole record:
/// content is handed on as it arrives, so a peer announcing 64 KiB records (or sending
/// megabytes of output) costs no more memory than what the caller decides to keep.
public enum FastCGI {
    public static let version: UInt8 = 1

    public enum RecordType: UInt8, Sendable {
        case beginRequest = 1, abortRequest, endRequest, params, stdin, stdout, stderr, data, getValues, getValuesResult, unknownType
    }

    /// One record's header and content (what `encodeRecord` writes).
    public static func encodeRecord(_ type: RecordType, requestID: UInt16, content: [UInt8], into out: inout ByteBuffer) {
        precondition(content.count <= 0xFFFF)
        let padding = (8 - content.count % 8) % 8
        out.writeInteger(version)
        out.writeInteger(type.rawValue)
        out.writeInteger(requestID)
        out.writeInteger(UInt16(content.count))
        out.writeInteger(UInt8(padding))
        out.writeInteger(UInt8(0))
        out.writeBytes(content)
        out.writeRepeatingByte(0, count: padding)
    }

    /// Name-value pairs as FCGI_PARAMS carries them: lengths below 128 in one byte, others in four
    /// with the high bit set.
    public static func encodeParams(_ params: [(String, String)]) -> [UInt8] {
        var out: [UInt8] = []
        func length(_ n: Int) {
            if n < 128 { out.append(UInt8(n)) } else {
                out += [UInt8((n >> 24) & 0x7F) | 0x80, UInt8((n >> 16) & 0xFF), UInt8((n >> 8) & 0xFF), UInt8(n & 0xFF)]
            }
        }
        for (name, value) in params {
            length(name.utf8.count)
            length(value.utf8.count)
            out += Array(name.utf8) + Array(value.utf8)
        }
        return out
    }

    /// The inverse of `encodeParams`; nil when the bytes are not well-formed pairs.
    public static func decodeParams(_ bytes: [UInt8]) -> [(String, String)]? {
        var i = 0, out: [(String, String)] = []
        func length() -> Int? {
            guard i < bytes.count else { return nil }
            if bytes[i] < 128 { i += 1; return Int(bytes[i - 1]) }
            guard i + 4 <= bytes.count else { return nil }
            let n = Int(bytes[i] & 0x7F) << 24 | Int(bytes[i + 1]) << 16 | Int(bytes[i + 2]) << 8 | Int(bytes[i + 3])
            i += 4
            return n
        }
        while i < bytes.count {
            guard let n = length(), let v = length(), i + n + v <= bytes.count else { return nil }
            out.append((String(decoding: bytes[i..<(i + n)], as: UTF8.self), String(decoding: bytes[(i + n)..<(i + n + v)], as: UTF8.self)))
            i += n + v
        }
        return out
    }

    /// A whole GET request for `path` (as FPM's status and ping pages are addressed: by
    /// SCRIPT_NAME), with no body: BEGIN_REQUEST (responder, connection closed after), PARAMS,
    /// the empty PARAMS and the empty STDIN that end both streams.
    public static func request(path: String, requestID: UInt16 = 1) -> ByteBuffer {
        var out = ByteBuffer()
        // role 1 = responder; flags 0 = close the connection when done.
        encodeRecord(.beginRequest, requestID: requestID, content: [0, 1, 0, 0, 0, 0, 0, 0], into: &out)
        let params = encodeParams([
            ("GATEWAY_INTERFACE", "CGI/1.1"), ("REQUEST_METHOD", "GET"), ("SCRIPT_NAME", path), ("SCRIPT_FILENAME", path),
            ("REQUEST_URI", path), ("DOCUMENT_URI", path), ("QUERY_STRING", ""), ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("SERVER_SOFTWARE", "desa-probe"), ("REMOTE_ADDR", "127.0.0.1"), ("CONTENT_LENGTH", "0"),
        ])
        var rest = params[...]
        while !rest.isEmpty {
            let chunk = rest.prefix(0xFFF8)
            encodeRecord(.params, requestID: requestID, content: Array(chunk), into: &out)
            rest = rest.dropFirst(chunk.count)
        }
        encodeRecord(.params, requestID: requestID, content: [], into: &out)
        encodeRecord(.stdin, requestID: requestID, content: [], into: &out)
        return out
    }

    /// What the record reader finds.
    public enum Event: Equatable, Sendable {
        /// Some content of a record (a record's content may come in several pieces).
        case content(type: UInt8, requestID: UInt16, ByteBuffer)
        /// A record ended (after its content and padding).
        case recordEnd(type: UInt8, requestID: UInt16)
    }

    public struct ProtocolError: Error, Equatable, Sendable {
        public var message: String
    }

    /// Reads records from bytes as they arrive, keeping nothing but the current header.
    public struct RecordReader: Sendable {
        private enum State: Sendable {
            case header
            case content(type: UInt8, id: UInt16, remaining: Int, padding: Int)
            case padding(type: UInt8, id: UInt16, remaining: Int)
        }
        private var state = State.header
        public init() {}

        /// Consumes what it can of `buffer` (a partial header stays in it) and returns the events.
        public mutating func read(_ buffer: inout ByteBuffer) throws(ProtocolError) -> [Event] {
            var events: [Event] = []
            while true {
                switch state {
                case .header:
                    guard buffer.readableBytes >= 8, let h = buffer.readBytes(length: 8) else { return events }
                    guard h[0] == FastCGI.version else {
                        throw ProtocolError(message: "malformed FastCGI record (version \(h[0]))")
                    }
                    guard (1...11).contains(h[1]) else { throw ProtocolError(message: "malformed FastCGI record (type \(h[1]))") }
                    let id = UInt16(h[2]) << 8 | UInt16(h[3])
                    let length = Int(h[4]) << 8 | Int(h[5])
                    state = .content(type: h[1], id: id, remaining: length, padding: Int(h[6]))
                case .content(let type, let id, let remaining, let padding):
                    if remaining == 0 { state = .padding(type: type, id: id, remaining: padding); continue }
                    guard buffer.readableBytes > 0 else { return events }
                    let n = min(remaining, buffer.readableBytes)
                    events.append(.content(type: type, requestID: id, buffer.readSlice(length: n)!))
                    state = .content(type: type, id: id, remaining: remaining - n, padding: padding)
                case .padding(let type, let id, let remaining):
                    let n = min(remaining, buffer.readableBytes)
                    buffer.moveReaderIndex(forwardBy: n)
                    if remaining - n > 0 { state = .padding(type: type, id: id, remaining: remaining - n); return events }
                    events.append(.recordEnd(type: type, requestID: id))
                    state = .header
                }
            }
        }
    }

    /// A responder's answer as it streams in: the CGI header block of STDOUT (`Status:` gives
    /// the code, 200 without one), then at most `bodyLimit` bytes of the body; the rest is
    /// dropped. STDERR is dropped but for its first line, kept as a hint.
    public struct ResponseAccumulator: Sendable {
        public let bodyLimit: Int
        public static let headerLimit = 8192
        public private(set) var status: Int?
        public private(set) var body: [UInt8] = []
        public private(set) var ended = false
        public private(set) var stderrHint = ""
        private var stderrHintDone = false
        public private(set) var droppedBytes = 0
        private var head: [UInt8] = []
        private let requestID: UInt16

        public init(requestID: UInt16 = 1, bodyLimit: Int = 4096) {
            self.requestID = requestID
            self.bodyLimit = bodyLimit
        }

        /// Whether nothing more is needed: the request ended, or the body is full.
        public var complete: Bool { ended || (status != nil && body.count >= bodyLimit) }

        public mutating func consume(_ events: [Event]) throws(ProtocolError) {
            for e in events {
                switch e {
                case .content(let type, let id, var chunk):
                    guard id == requestID || id == 0 else { continue }
                    if type == RecordType.stdout.rawValue {
                        try stdout(&chunk)
                    } else if type == RecordType.stderr.rawValue, !stderrHintDone {
                        stderrHint += chunk.readString(length: min(chunk.readableBytes, 200)) ?? ""
                        if let nl = stderrHint.firstIndex(where: \.isNewline) {
                            stderrHint = String(stderrHint[..<nl])
                            stderrHintDone = true
                        } else if stderrHint.count >= 200 {
                            stderrHint = String(stderrHint.prefix(200))
                            stderrHintDone = true
                        }
                    }
                case .recordEnd(let type, let id):
                    if type == RecordType.endRequest.rawValue && id == requestID { ended = true }
                }
            }
        }

        private mutating func stdout(_ chunk: inout ByteBuffer) throws(ProtocolError) {
            if status == nil {
                let bytes = chunk.readBytes(length: chunk.readableBytes) ?? []
                head += bytes
                guard let end = Self.headerEnd(head) else {
                    if head.count > Self.headerLimit { throw ProtocolError(message: "FastCGI answer headers longer than \(Self.headerLimit) bytes") }
                    return
                }
                let headers = String(decoding: head[..<end.start], as: UTF8.self)
                status = 200
                for line in headers.split(whereSeparator: \.isNewline) {
                    let parts = line.split(separator: ":", maxSplits: 1)
                    guard parts.count == 2, parts[0].lowercased() == "status" else { continue }
                    let value = parts[1].trimmingCharacters(in: .whitespaces)
                    guard let code = Int(value.prefix(3)), (100...999).contains(code) else {
                        throw ProtocolError(message: "malformed FastCGI Status header")
                    }
                    status = code
                }
                let rest = Array(head[end.bodyStart...])
                head = []
                appendBody(rest[...])
            } else {
                let take = min(chunk.readableBytes, max(0, bodyLimit - body.count))
                if take > 0 { body += chunk.readBytes(length: take)! }
                droppedBytes += chunk.readableBytes
            }
        }

        private mutating func appendBody(_ bytes: ArraySlice<UInt8>) {
            let take = min(bytes.count, max(0, bodyLimit - body.count))
            body += bytes.prefix(take)
            droppedBytes += bytes.count - take
        }

        /// Where the header block ends: CRLF CRLF or LF LF (CGI allows either).
        static func headerEnd(_ b: [UInt8]) -> (start: Int, bodyStart: Int)? {
            var i = 0
            while i < b.count {
                if b[i] == 10 {
                    if i + 1 < b.count && b[i + 1] == 10 { return (i, i + 2) }
                    if i + 2 < b.count && b[i + 1] == 13 && b[i + 2] == 10 { return (i, i + 3) }
                }
                i += 1
            }
            return nil
        }
    }
}
