import Crypto
import Foundation
import SwiftASN1
import X509

/// CSRs, PEM chains and certificate facts for the ACME client.
enum ACMECertificates {
    /// A CSR (DER) for `names`, signed with `key`: every name in subjectAltName, the first in
    /// the CN when it fits (64 characters).
    static func csr(names: [String], key: P256.Signing.PrivateKey) throws -> [UInt8] {
        let subject: DistinguishedName
        if let first = names.first, first.utf8.count <= 64 {
            subject = try DistinguishedName { CommonName(first) }
        } else {
            subject = DistinguishedName()
        }
        let extensions = try Certificate.Extensions {
            SubjectAlternativeNames(names.map { GeneralName.dnsName($0) })
        }
        let attributes = CertificateSigningRequest.Attributes(
            [try CertificateSigningRequest.Attribute(ExtensionRequest(extensions: extensions))])
        let csr = try CertificateSigningRequest(version: .v1, subject: subject, privateKey: Certificate.PrivateKey(key),
                                                attributes: attributes, signatureAlgorithm: .ecdsaWithSHA256)
        var serializer = DER.Serializer()
        try serializer.serialize(csr)
        return serializer.serializedBytes
    }

    /// The PEM blocks of type CERTIFICATE, parsed, in order.
    static func parseChain(_ pem: String) throws -> [Certificate] {
        let documents = try PEMDocument.parseMultiple(pemString: pem)
        return try documents.filter { $0.discriminator == "CERTIFICATE" }.map { try Certificate(derEncoded: $0.derBytes) }
    }

    static func pem(_ certificate: Certificate) throws -> String {
        try certificate.serializeAsPEM().pemString + "\n"
    }

    /// The leaf's DNS names (subjectAltName).
    static func dnsNames(_ certificate: Certificate) throws -> [String] {
        guard let san = try certificate.extensions.subjectAlternativeNames else { return [] }
        return san.compactMap { if case .dnsName(let n) = $0 { return n.lowercased() } else { return nil } }
    }

    static func serialHex(_ certificate: Certificate) -> String {
        let bytes = certificate.serialNumber.bytes.drop(while: { $0 == 0 })
        let hex = bytes.map { String(format: "%02x", $0) }.joined()
        return hex.isEmpty ? "0" : hex
    }

    /// RFC 9773 §4.1: base64url(AKI keyIdentifier) "." base64url(serial number DER content).
    static func ariCertID(_ certificate: Certificate) throws -> String {
        guard let aki = try certificate.extensions.authorityKeyIdentifier, let keyID = aki.keyIdentifier else {
            throw DesaError.invalid("the certificate for \(certificate.subject) has no authority key identifier, so it has no ARI certificate ID")
        }
        return Base64URL.encode(keyID) + "." + Base64URL.encode(certificate.serialNumber.bytes)
    }

    /// The ARI certificate ID of the first certificate in `pem`.
    static func ariCertID(pem: String) throws -> String {
        let chain: [Certificate]
        do { chain = try parseChain(pem) } catch {
            throw DesaError.invalid("not a PEM certificate: \(error)")
        }
        guard let leaf = chain.first else { throw DesaError.invalid("no CERTIFICATE block in the PEM text") }
        return try ariCertID(leaf)
    }
}
