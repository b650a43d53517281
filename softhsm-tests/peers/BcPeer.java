// Bouncy Castle (Debian's libbcprov/libbcpkix) as an independent S/MIME peer for softhsm-tests/peers.rs.
// Its streaming generators write BER (indefinite lengths, chunked content), which the tests keep as produced.
//
//   sign MODE CERT KEY CHAIN IN OUT detached|opaque     MODE: pkcs1 | pss | pss-salt20 | ecdsa
//   encrypt KT CIPHER RECIPIENT_CERT IN OUT             KT: pkcs1 | oaep-sha1 | oaep-sha256 | oaep-sha512 | ecdh
//                                                       CIPHER: aes128-cbc | aes256-cbc | aes128-gcm | aes256-gcm
//   verify ROOT SIG CONTENT|-                           signature and chain to ROOT (certificates from the message)
//   decrypt KEY CERT IN OUT                             enveloped-data or auth-enveloped-data
//   ssmax-protect SENDER LABEL FILENAME RECIPIENT IN OUT an SSMAX attachment as the profile binds it
//                                                       (docs/ssmax-mail-profile.md): AES-256-GCM,
//                                                       RSA-OAEP-SHA256, authAttrs content-type + id-ssmax.4
//   ssmax-open KEY CERT IN OUT                          decrypt (authAttrs as the GCM additional data)
//                                                       and print the id-ssmax.4 binding
//   ssmax-rekey KEY CERT SENDER LABEL FILENAME NEXT IN OUT ENTITY
//                                                       the reference hop's re-keying: open, check the
//                                                       binding names SENDER, LABEL and FILENAME, write
//                                                       the entity, encrypt it anew to NEXT, same authAttrs
//   ssmax-org-sign ORG_KEY ORG_CERT SENDER_SIG CONTENT OUT KIND DESCRIPTION ORG CHAIN
//                                                       the reference hop's signature: the sender's claimed
//                                                       token kind must be KIND; identityMethod stated,
//                                                       originator recorded, CHAIN carried
import java.io.*;
import java.nio.file.*;
import java.security.*;
import java.security.cert.*;
import java.security.spec.*;
import java.util.*;
import javax.crypto.spec.*;
import org.bouncycastle.asn1.*;
import org.bouncycastle.asn1.cms.Attribute;
import org.bouncycastle.asn1.cms.AttributeTable;
import org.bouncycastle.asn1.cms.CMSAttributes;
import org.bouncycastle.asn1.cms.CMSObjectIdentifiers;
import org.bouncycastle.asn1.cms.IssuerAndSerialNumber;
import org.bouncycastle.asn1.cms.ContentInfo;
import org.bouncycastle.asn1.pkcs.PKCSObjectIdentifiers;
import org.bouncycastle.asn1.pkcs.PrivateKeyInfo;
import org.bouncycastle.cert.X509CertificateHolder;
import org.bouncycastle.cert.jcajce.*;
import org.bouncycastle.cms.*;
import org.bouncycastle.cms.jcajce.*;
import org.bouncycastle.jce.provider.BouncyCastleProvider;
import org.bouncycastle.openssl.PEMParser;
import org.bouncycastle.openssl.jcajce.JcaPEMKeyConverter;
import org.bouncycastle.operator.jcajce.*;
import org.bouncycastle.util.Store;

public class BcPeer {
    static X509Certificate cert(String path) throws Exception {
        try (PEMParser p = new PEMParser(new FileReader(path))) {
            return new JcaX509CertificateConverter().setProvider("BC").getCertificate((X509CertificateHolder) p.readObject());
        }
    }

    static List<X509Certificate> certs(String path) throws Exception {
        List<X509Certificate> out = new ArrayList<>();
        try (PEMParser p = new PEMParser(new FileReader(path))) {
            Object o;
            while ((o = p.readObject()) != null) {
                out.add(new JcaX509CertificateConverter().setProvider("BC").getCertificate((X509CertificateHolder) o));
            }
        }
        return out;
    }

    static PrivateKey key(String path) throws Exception {
        try (PEMParser p = new PEMParser(new FileReader(path))) {
            return new JcaPEMKeyConverter().setProvider("BC").getPrivateKey((PrivateKeyInfo) p.readObject());
        }
    }

    public static void main(String[] a) throws Exception {
        Security.addProvider(new BouncyCastleProvider());
        switch (a[0]) {
            case "sign" -> sign(a[1], a[2], a[3], a[4], a[5], a[6], a[7].equals("detached"));
            case "encrypt" -> encrypt(a[1], a[2], a[3], a[4], a[5]);
            case "verify" -> verify(a[1], a[2], a[3]);
            case "decrypt" -> decrypt(a[1], a[2], a[3], a[4]);
            case "ssmax-protect" -> ssmaxProtect(a[1], a[2], a[3], a[4], a[5], a[6]);
            case "ssmax-open" -> ssmaxOpen(a[1], a[2], a[3], a[4]);
            case "ssmax-rekey" -> ssmaxRekey(a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9]);
            case "ssmax-org-sign" -> ssmaxOrgSign(a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9]);
            default -> throw new IllegalArgumentException(a[0]);
        }
    }

    static void sign(String mode, String certPath, String keyPath, String chainPath, String in, String out, boolean detached) throws Exception {
        X509Certificate signer = cert(certPath);
        JcaContentSignerBuilder b = switch (mode) {
            case "pkcs1" -> new JcaContentSignerBuilder("SHA256withRSA");
            case "pss" -> new JcaContentSignerBuilder("SHA256withRSAandMGF1");
            case "pss-salt20" -> new JcaContentSignerBuilder("SHA256withRSAandMGF1",
                new PSSParameterSpec("SHA-256", "MGF1", MGF1ParameterSpec.SHA256, 20, 1));
            case "ecdsa" -> new JcaContentSignerBuilder("SHA256withECDSA");
            case "ecdsa-sha384" -> new JcaContentSignerBuilder("SHA384withECDSA");
            default -> throw new IllegalArgumentException(mode);
        };
        CMSSignedDataStreamGenerator gen = new CMSSignedDataStreamGenerator();
        gen.addSignerInfoGenerator(new JcaSignerInfoGeneratorBuilder(new JcaDigestCalculatorProviderBuilder().setProvider("BC").build())
            .build(b.setProvider("BC").build(key(keyPath)), signer));
        List<X509Certificate> all = new ArrayList<>(List.of(signer));
        all.addAll(certs(chainPath));
        gen.addCertificates(new JcaCertStore(all));
        try (OutputStream o = new FileOutputStream(out); OutputStream s = gen.open(o, !detached)) {
            s.write(Files.readAllBytes(Path.of(in)));
        }
    }

    static void encrypt(String kt, String cipher, String recipPath, String in, String out) throws Exception {
        X509Certificate recip = cert(recipPath);
        RecipientInfoGenerator rig = switch (kt) {
            case "pkcs1" -> new JceKeyTransRecipientInfoGenerator(recip);
            case "oaep-sha1", "oaep-sha256", "oaep-sha512" -> {
                String h = kt.equals("oaep-sha1") ? "SHA-1" : kt.equals("oaep-sha256") ? "SHA-256" : "SHA-512";
                OAEPParameterSpec spec = new OAEPParameterSpec(h, "MGF1", new MGF1ParameterSpec(h), PSource.PSpecified.DEFAULT);
                yield new JceKeyTransRecipientInfoGenerator(recip, new JcaAlgorithmParametersConverter().getAlgorithmIdentifier(PKCSObjectIdentifiers.id_RSAES_OAEP, spec));
            }
            case "ecdh" -> {
                KeyPairGenerator g = KeyPairGenerator.getInstance("EC", "BC");
                g.initialize(((java.security.interfaces.ECPublicKey) recip.getPublicKey()).getParams());
                KeyPair eph = g.generateKeyPair();
                yield new JceKeyAgreeRecipientInfoGenerator(CMSAlgorithm.ECDH_SHA256KDF, eph.getPrivate(), eph.getPublic(), CMSAlgorithm.AES256_WRAP)
                    .addRecipient(recip).setProvider("BC");
            }
            default -> throw new IllegalArgumentException(kt);
        };
        if (rig instanceof JceKeyTransRecipientInfoGenerator k) {
            k.setProvider("BC");
        }
        ASN1ObjectIdentifier alg = switch (cipher) {
            case "aes128-cbc" -> CMSAlgorithm.AES128_CBC;
            case "aes256-cbc" -> CMSAlgorithm.AES256_CBC;
            case "aes128-gcm" -> CMSAlgorithm.AES128_GCM;
            case "aes256-gcm" -> CMSAlgorithm.AES256_GCM;
            default -> throw new IllegalArgumentException(cipher);
        };
        byte[] data = Files.readAllBytes(Path.of(in));
        try (OutputStream o = new FileOutputStream(out)) {
            if (cipher.endsWith("gcm")) {
                // bcpkix 1.72 has no streaming generator for AuthEnvelopedData.
                CMSAuthEnvelopedDataGenerator gen = new CMSAuthEnvelopedDataGenerator();
                gen.addRecipientInfoGenerator(rig);
                o.write(gen.generate(new CMSProcessableByteArray(data), (org.bouncycastle.operator.OutputAEADEncryptor) new JceCMSContentEncryptorBuilder(alg).setProvider("BC").build()).getEncoded());
            } else {
                CMSEnvelopedDataStreamGenerator gen = new CMSEnvelopedDataStreamGenerator();
                gen.addRecipientInfoGenerator(rig);
                try (OutputStream s = gen.open(o, new JceCMSContentEncryptorBuilder(alg).setProvider("BC").build())) {
                    s.write(data);
                }
            }
        }
    }

    static void verify(String rootPath, String sigPath, String contentPath) throws Exception {
        byte[] sig = Files.readAllBytes(Path.of(sigPath));
        CMSSignedData sd = contentPath.equals("-") ? new CMSSignedData(sig)
            : new CMSSignedData(new CMSProcessableByteArray(Files.readAllBytes(Path.of(contentPath))), sig);
        Store<X509CertificateHolder> store = sd.getCertificates();
        JcaX509CertificateConverter conv = new JcaX509CertificateConverter().setProvider("BC");
        List<X509Certificate> carried = new ArrayList<>();
        for (X509CertificateHolder h : store.getMatches(null)) {
            carried.add(conv.getCertificate(h));
        }
        for (SignerInformation si : sd.getSignerInfos().getSigners()) {
            @SuppressWarnings("unchecked")
            Collection<X509CertificateHolder> found = store.getMatches(si.getSID());
            X509Certificate signer = conv.getCertificate(found.iterator().next());
            if (!si.verify(new JcaSimpleSignerInfoVerifierBuilder().setProvider("BC").build(signer))) {
                throw new SecurityException("signature does not verify");
            }
            // The chain from the signer to ROOT, built from the certificates the message carries.
            X509CertSelector target = new X509CertSelector();
            target.setCertificate(signer);
            PKIXBuilderParameters params = new PKIXBuilderParameters(Set.of(new TrustAnchor(cert(rootPath), null)), target);
            params.addCertStore(CertStore.getInstance("Collection", new CollectionCertStoreParameters(carried), "BC"));
            params.setRevocationEnabled(false);
            PKIXCertPathBuilderResult r = (PKIXCertPathBuilderResult) CertPathBuilder.getInstance("PKIX", "BC").build(params);
            System.out.println("verified " + signer.getSubjectX500Principal().getName() + " via " + r.getCertPath().getCertificates().size() + " certificate(s) to the root; signature " + si.getEncryptionAlgOID());
        }
    }

    static void decrypt(String keyPath, String certPath, String in, String out) throws Exception {
        byte[] data = Files.readAllBytes(Path.of(in));
        X509Certificate me = cert(certPath);
        PrivateKey k = key(keyPath);
        ContentInfo ci = ContentInfo.getInstance(data);
        boolean auth = ci.getContentType().equals(PKCSObjectIdentifiers.id_ct_authEnvelopedData);
        RecipientInformationStore recipients = auth
            ? new CMSAuthEnvelopedData(data).getRecipientInfos() : new CMSEnvelopedData(data).getRecipientInfos();
        RecipientInformation r = recipients.get(new JceKeyTransRecipientId(me));
        if (r == null) {
            throw new IllegalStateException("not encrypted for " + me.getSubjectX500Principal());
        }
        // With authenticated attributes, only the AuthEnveloped recipient feeds them to GCM (bcpkix 1.72).
        Recipient rec = auth ? new JceKeyTransAuthEnvelopedRecipient(k).setProvider("BC") : new JceKeyTransEnvelopedRecipient(k).setProvider("BC");
        Files.write(Path.of(out), r.getContent(rec));
    }

    /** id-ssmax (docs/ssmax-mail-profile.md); .4 is an attachment's binding. */
    static final ASN1ObjectIdentifier ID_SSMAX_ATTACHMENT =
        new ASN1ObjectIdentifier("2.25.177981922264625539930734361460954600427.4");

    /** RSA-OAEP with SHA-256 and MGF1-SHA-256 to the certificate at `path`, as the profile says. */
    static JceKeyTransRecipientInfoGenerator oaepSha256(String path) throws Exception {
        OAEPParameterSpec spec = new OAEPParameterSpec("SHA-256", "MGF1", new MGF1ParameterSpec("SHA-256"), PSource.PSpecified.DEFAULT);
        JceKeyTransRecipientInfoGenerator rig = new JceKeyTransRecipientInfoGenerator(cert(path),
            new JcaAlgorithmParametersConverter().getAlgorithmIdentifier(PKCSObjectIdentifiers.id_RSAES_OAEP, spec));
        rig.setProvider("BC");
        return rig;
    }

    static void ssmaxProtect(String senderPath, String label, String filename, String recipPath, String in, String out) throws Exception {
        X509CertificateHolder sender = new JcaX509CertificateHolder(cert(senderPath));
        ASN1EncodableVector binding = new ASN1EncodableVector();
        binding.add(new IssuerAndSerialNumber(sender.getIssuer(), sender.getSerialNumber()));
        binding.add(new DERUTF8String(label));
        binding.add(new DERUTF8String(filename));
        Hashtable<ASN1ObjectIdentifier, Attribute> attrs = new Hashtable<>();
        attrs.put(CMSAttributes.contentType, new Attribute(CMSAttributes.contentType, new DERSet(CMSObjectIdentifiers.data)));
        attrs.put(ID_SSMAX_ATTACHMENT, new Attribute(ID_SSMAX_ATTACHMENT, new DERSet(new DERSequence(binding))));
        CMSAuthEnvelopedDataGenerator gen = new CMSAuthEnvelopedDataGenerator();
        gen.addRecipientInfoGenerator(oaepSha256(recipPath));
        gen.setAuthenticatedAttributeGenerator(new SimpleAttributeTableGenerator(new AttributeTable(attrs)));
        byte[] data = Files.readAllBytes(Path.of(in));
        Files.write(Path.of(out), gen.generate(new CMSProcessableByteArray(data),
            (org.bouncycastle.operator.OutputAEADEncryptor) new JceCMSContentEncryptorBuilder(CMSAlgorithm.AES256_GCM).setProvider("BC").build()).getEncoded());
    }

    static void ssmaxOpen(String keyPath, String certPath, String in, String out) throws Exception {
        CMSAuthEnvelopedData ad = new CMSAuthEnvelopedData(Files.readAllBytes(Path.of(in)));
        X509Certificate me = cert(certPath);
        RecipientInformation r = ad.getRecipientInfos().get(new JceKeyTransRecipientId(me));
        if (r == null) {
            throw new IllegalStateException("not encrypted for " + me.getSubjectX500Principal());
        }
        Files.write(Path.of(out), r.getContent(new JceKeyTransAuthEnvelopedRecipient(key(keyPath)).setProvider("BC")));
        AttributeTable attrs = ad.getAuthAttrs();
        Attribute b = attrs == null ? null : attrs.get(ID_SSMAX_ATTACHMENT);
        if (b == null) {
            throw new SecurityException("no SSMAX binding among the authenticated attributes");
        }
        ASN1Sequence s = ASN1Sequence.getInstance(b.getAttrValues().getObjectAt(0));
        IssuerAndSerialNumber who = IssuerAndSerialNumber.getInstance(s.getObjectAt(0));
        System.out.println("originator serial " + who.getSerialNumber().getValue().toString(16) + " issuer " + who.getName());
        System.out.println("label " + ASN1UTF8String.getInstance(s.getObjectAt(1)).getString());
        System.out.println("filename " + ASN1UTF8String.getInstance(s.getObjectAt(2)).getString());
    }

    static final ASN1ObjectIdentifier ID_SSMAX_IDENTITY =
        new ASN1ObjectIdentifier("2.25.177981922264625539930734361460954600427.1");
    static final ASN1ObjectIdentifier ID_SSMAX_ORIGINATOR =
        new ASN1ObjectIdentifier("2.25.177981922264625539930734361460954600427.2");

    static void ssmaxRekey(String keyPath, String certPath, String senderPath, String label, String filename,
                           String nextPath, String in, String out, String entityOut) throws Exception {
        CMSAuthEnvelopedData ad = new CMSAuthEnvelopedData(Files.readAllBytes(Path.of(in)));
        RecipientInformation r = ad.getRecipientInfos().get(new JceKeyTransRecipientId(cert(certPath)));
        if (r == null) {
            throw new SecurityException("not encrypted to this organisation");
        }
        byte[] entity = r.getContent(new JceKeyTransAuthEnvelopedRecipient(key(keyPath)).setProvider("BC"));
        AttributeTable attrs = ad.getAuthAttrs();
        Attribute b = attrs == null ? null : attrs.get(ID_SSMAX_ATTACHMENT);
        if (b == null) {
            throw new SecurityException("refused: the attachment '" + label + "' is not bound to a sender");
        }
        ASN1Sequence s = ASN1Sequence.getInstance(b.getAttrValues().getObjectAt(0));
        IssuerAndSerialNumber who = IssuerAndSerialNumber.getInstance(s.getObjectAt(0));
        X509CertificateHolder sender = new JcaX509CertificateHolder(cert(senderPath));
        if (!who.getName().equals(sender.getIssuer()) || !who.getSerialNumber().getValue().equals(sender.getSerialNumber())) {
            throw new SecurityException("refused: the attachment '" + label + "' was encrypted by someone else than the sender");
        }
        if (!ASN1UTF8String.getInstance(s.getObjectAt(1)).getString().equals(label)
            || !ASN1UTF8String.getInstance(s.getObjectAt(2)).getString().equals(filename)) {
            throw new SecurityException("refused: the attachment '" + label + "' was encrypted under another label or file name");
        }
        Files.write(Path.of(entityOut), entity);
        // Bouncy Castle cannot replace only the recipient infos: the same content and the same
        // authenticated attributes, encrypted anew.
        CMSAuthEnvelopedDataGenerator gen = new CMSAuthEnvelopedDataGenerator();
        gen.addRecipientInfoGenerator(oaepSha256(nextPath));
        gen.setAuthenticatedAttributeGenerator(new SimpleAttributeTableGenerator(attrs));
        Files.write(Path.of(out), gen.generate(new CMSProcessableByteArray(entity),
            (org.bouncycastle.operator.OutputAEADEncryptor) new JceCMSContentEncryptorBuilder(CMSAlgorithm.AES256_GCM).setProvider("BC").build()).getEncoded());
    }

    static void ssmaxOrgSign(String keyPath, String certPath, String senderSig, String contentPath, String out,
                             String kind, String description, String orgName, String chainPath) throws Exception {
        CMSSignedData sent = new CMSSignedData(Files.readAllBytes(Path.of(senderSig)));
        SignerInformation si = sent.getSignerInfos().getSigners().iterator().next();
        @SuppressWarnings("unchecked")
        X509CertificateHolder sender = (X509CertificateHolder) sent.getCertificates().getMatches(si.getSID()).iterator().next();
        AttributeTable signed = si.getSignedAttributes();
        Attribute claim = signed.get(ID_SSMAX_IDENTITY);
        Attribute when = signed.get(CMSAttributes.signingTime);
        if (claim == null || when == null) {
            throw new SecurityException("refused: the sender's signature does not say how and when the sender was identified");
        }
        ASN1Sequence c = ASN1Sequence.getInstance(claim.getAttrValues().getObjectAt(0));
        String claimedKind = ASN1UTF8String.getInstance(c.getObjectAt(1)).getString();
        if (!claimedKind.equals(kind)) {
            throw new SecurityException("refused: the sender's client claims a '" + claimedKind + "' token, the organisation registered '" + kind + "'");
        }
        ASN1EncodableVector factors = new ASN1EncodableVector();
        factors.add(new DERUTF8String("possession of the " + kind + " token " + orgName + " registered for this certificate"));
        factors.add(new DERUTF8String("knowledge of its PIN"));
        ASN1EncodableVector stated = new ASN1EncodableVector();
        stated.add(new DERSequence(factors));
        stated.add(new DERUTF8String(kind));
        stated.add(new DERUTF8String(description + " (registered by " + orgName + ")"));
        stated.add(c.getObjectAt(3));
        ASN1EncodableVector originator = new ASN1EncodableVector();
        originator.add(sender.toASN1Structure());
        originator.add(new DERGeneralizedTime(org.bouncycastle.asn1.cms.Time.getInstance(when.getAttrValues().getObjectAt(0)).getDate()));
        Hashtable<ASN1ObjectIdentifier, Attribute> extra = new Hashtable<>();
        extra.put(ID_SSMAX_IDENTITY, new Attribute(ID_SSMAX_IDENTITY, new DERSet(new DERSequence(stated))));
        extra.put(ID_SSMAX_ORIGINATOR, new Attribute(ID_SSMAX_ORIGINATOR, new DERSet(new DERSequence(originator))));
        X509Certificate me = cert(certPath);
        CMSSignedDataGenerator gen = new CMSSignedDataGenerator();
        gen.addSignerInfoGenerator(new JcaSimpleSignerInfoGeneratorBuilder().setProvider("BC")
            .setSignedAttributeGenerator(new AttributeTable(extra)).build("SHA256withRSA", key(keyPath), me));
        List<X509Certificate> carried = new ArrayList<>(List.of(me));
        carried.addAll(certs(chainPath));
        gen.addCertificates(new JcaCertStore(carried));
        CMSSignedData sig = gen.generate(new CMSProcessableByteArray(Files.readAllBytes(Path.of(contentPath))), false);
        Files.write(Path.of(out), sig.getEncoded());
    }
}
