import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One answer from the CA.
struct ACMEResponse: Sendable {
    var url: String
    var status: Int
    var headers: HTTPHeaders
    var body: [UInt8]

    var location: String? { headers.first(name: "Location") }
    var nonce: String? { headers.first(name: "Replay-Nonce") }
    var retryAfter: Date? { headers.first(name: "Retry-After").flatMap { ACMEHTTP.parseRetryAfter($0, now: Date()) } }

    /// The beginning of the body, for messages.
    var snippet: String {
        let text = String(decoding: body.prefix(200), as: UTF8.self)
        return body.isEmpty ? "an empty body" : Quote.show(text, limit: 200)
    }
}

/// HTTP to the CA over one `HTTPClient`: every failure becomes a `DesaError` naming the URL.
struct ACMEHTTP: Sendable {
    let client: HTTPClient
    let settings: ACMEClientSettings
    static let maxBody = 4 << 20

    init(trustRoots: [String]?, settings: ACMEClientSettings) throws {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let trustRoots {
            var certs: [NIOSSLCertificate] = []
            for path in trustRoots {
                do {
                    let found = try NIOSSLCertificate.fromPEMFile(path)
                    guard !found.isEmpty else { throw DesaError.system("no certificate") }
                    certs += found
                } catch {
                    throw DesaError(.config, "cannot read the trusted certificates in \(path): \(Self.describe(error))")
                }
            }
            tls.trustRoots = .certificates(certs)
        }
        let timeout = HTTPClient.Configuration.Timeout(
            connect: .milliseconds(Int64(settings.connectTimeout * 1000)),
            read: .milliseconds(Int64(settings.requestTimeout * 1000)))
        var config = HTTPClient.Configuration(tlsConfiguration: tls, redirectConfiguration: .disallow, timeout: timeout)
        config.httpVersion = .automatic
        // A refused connection fails now, not after `connectTimeout` of silent retries.
        config.connectionPool.retryConnectionEstablishment = false
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
        self.settings = settings
    }

    func shutdown() async throws { try await client.shutdown() }

    func send(_ method: HTTPMethod, _ url: String, body: [UInt8]? = nil,
              contentType: String? = nil, accept: String? = nil) async throws -> ACMEResponse {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "User-Agent", value: settings.userAgent)
        if let contentType { request.headers.add(name: "Content-Type", value: contentType) }
        if let accept { request.headers.add(name: "Accept", value: accept) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        do {
            let response = try await client.execute(request, timeout: .milliseconds(Int64(settings.requestTimeout * 1000)))
            var buffer = try await response.body.collect(upTo: Self.maxBody)
            return ACMEResponse(url: url, status: Int(response.status.code), headers: response.headers,
                                body: buffer.readBytes(length: buffer.readableBytes) ?? [])
        } catch let error as NIOTooManyBytesError {
            _ = error
            throw DesaError.system("the ACME server at \(url) sent more than \(Self.maxBody >> 20) MiB")
        } catch {
            throw DesaError.system("\(method.rawValue) \(url) failed: \(Self.describe(error))")
        }
    }

    /// A readable reason for a transport error.
    static func describe(_ error: Error) -> String {
        if let e = error as? DesaError { return e.message }
        if let e = error as? HTTPClientError {
            switch e {
            case .remoteConnectionClosed: return "the server closed the connection before the response was complete"
            case .bodyLengthMismatch: return "the response was shorter than its Content-Length (truncated)"
            case .readTimeout, .deadlineExceeded: return "no complete answer in time"
            case .connectTimeout: return "connecting timed out"
            case .tlsHandshakeTimeout: return "the TLS handshake timed out"
            default: return "\(e)"
            }
        }
        if let e = error as? NIOConnectionError {
            let reasons = e.connectionErrors.map { "\($0.error)" } + (e.dnsAError.map { ["\($0)"] } ?? [])
            return reasons.isEmpty ? "cannot connect" : "cannot connect (\(Set(reasons).sorted().joined(separator: ", ")))"
        }
        if let e = error as? IOError { return String(cString: strerror(e.errnoCode)) }
        if let e = error as? HTTPParserError {
            if case .invalidEOFState = e { return "the response ended before it was complete (truncated)" }
            return "the response is not valid HTTP (\(e))"
        }
        if error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError {
            let text = "\(error)"
            // BoringSSL's reason, e.g. "...:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED at ...".
            if let r = text.range(of: "OPENSSL_internal:") {
                let reason = text[r.upperBound...].prefix { $0.isUppercase || $0 == "_" || $0.isNumber }
                if reason == "CERTIFICATE_VERIFY_FAILED" { return "TLS: the server's certificate is not trusted (CERTIFICATE_VERIFY_FAILED)" }
                if !reason.isEmpty { return "TLS: \(reason)" }
            }
            return "TLS: \(text)"
        }
        return "\(error)"
    }

    /// Retry-After: delay-seconds or an HTTP date (RFC 9110 §10.2.3).
    static func parseRetryAfter(_ value: String, now: Date) -> Date? {
        let v = value.trimmingCharacters(in: .whitespaces)
        if let seconds = Int(v), seconds >= 0 { return now.addingTimeInterval(TimeInterval(seconds)) }
        for format in ["EEE, dd MMM yyyy HH:mm:ss zzz", "EEEE, dd-MMM-yy HH:mm:ss zzz", "EEE MMM d HH:mm:ss yyyy"] {
            let f = DateFormatter()
            f.locale = Locale(identifier: "en_US_POSIX")
            f.timeZone = TimeZone(identifier: "GMT")
            f.dateFormat = format
            if let d = f.date(from: v) { return d }
        }
        return nil
    }

    /// An RFC 3339 timestamp, with or without fractional seconds.
    static func parseTimestamp(_ s: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: s) { return d }
        f.formatOptions = [.withInternetDateTime]
        return f.date(from: s)
    }
}
