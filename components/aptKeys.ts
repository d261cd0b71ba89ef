/**
 * Signing keys of the APT repositories the verifiers install from at boot, inline: a scale-out then depends
 * on no keyserver. Each is pinned by its full fingerprint, which the tests check against the key material
 * with gpg. Exported from the NodeSource keyring (`/usr/share/keyrings/nodesource.gpg`), whose fingerprint
 * is the one NodeSource publishes; it carries no expiry date.
 */

/** An ASCII-armored OpenPGP public key and the fingerprint it must have. */
export interface AptSigningKey {
  fingerprint: string;
  armored: string;
}

/** NodeSource (`NSolid <nsolid-gpg@nodesource.com>`), signing deb.nodesource.com. */
export const NODESOURCE_KEY: AptSigningKey = {
  fingerprint: "6F71F525282841EEDAF851B42F59B5F99B1BE0B4",
  armored: `
-----BEGIN PGP PUBLIC KEY BLOCK-----

mQENBFdDN1ABCADaNd/I3j3tn40deQNgz7hB2NvT+syXe6k4ZmdiEcOfBvFrkS8B
hNS67t93etHsxEy7E0qwsZH32bKazMqe9zDwoa3aVImryjh6SHC9lMtW27JPHFeM
Srkt9YmH1WMwWcRO6eSY9B3PpazquhnvbammLuUojXRIxkDroy6Fw4UKmUNSRr32
9Ej87jRoR1B2/57Kfp2Y4+vFGGzSvh3AFQpBHq51qsNHALU6+8PjLfIt+5TPvaWR
TB+kAZnQZkaIQM2nr1n3oj6ak2RATY/+kjLizgFWzgEfbCrbsyq68UoY5FPBnu4Z
E3iDZpaIqwKr0seUC7iA1xM5eHi5kty1oB7HABEBAAG0Ik5Tb2xpZCA8bnNvbGlk
LWdwZ0Bub2Rlc291cmNlLmNvbT6JAU4EEwEKADgCGwMCHgECF4AWIQRvcfUlKChB
7tr4UbQvWbX5mxvgtAUCaWfGnwULCQgHAgYVCgkICwIEFgIDAQAKCRAvWbX5mxvg
tL0CB/0TTur63uXTPbq+JBQET6jnEVaDrNmpHI/z2RMuj163gmy9CtCwG060c+TI
qzmzlPacbTkGc5C50teX2mhs+5JIthfhMibR6Dgy0zeSVuvt9WJ3TNWBpoW5Ezka
17SA3Xv9UEJS2eyRd7ALf7TGGAj8DG+xRABXl6bJIXh1s7Hki7kwgVrpNxm/EqyX
OrzExm0g2UjgdkbnZrnTyZMB6X8f8fZPo0QcByPvLee2DtkKeE+SZlFXyvnCzcw0
94K45vlWkEdRzmiiWAG7guzZyZYGcCO5EoJ3LUP90qhrmQUfsbtczeoEW17EW1jM
RohLo8BqVyYc1CAFlULIDNeS3aipuQENBFdDN1ABCACq02gutmss6jiD2u50vdAR
x3JOGd92trWRf7qH9/MTToslhoU/LiXhaE0x5+UkKuRbcruCtytn226brvwD0BdO
QGpY81ZAxjTFuKUpIDmrHcrI/N9XLrLKx19kWEttsIPNJOgvx8JoeReOX2hLjcbF
fmz8e6D1K7eZ+hjMfOLxD94tfhQwYtKbfwf0JwxQV5ItQRryd+X+TcA3nyvFWiJ8
Vz92Tf1iG7Z+XasaaZFf2JDuxoiZaSZY7va395ClCEMykFsRbGwgDyB6Fr+6x/UU
sYA4rYV7RumIOUdWngWyWjzVy/cKSWASW4jI5ABWs+AfeRTqmZt6+6B7oIghrB19
ABEBAAGJAR8EGAECAAkFAldDN1ACGwwACgkQL1m1+Zsb4LRPzgf9FTfPA0d2N37q
su5av3bYZJ+w6pvWF3aK2Zdy9ednhCBfPNmhvBRN6mXWixo0DuKEoQMjVpkX0hrq
B9FxEVwCPZ9K/JuJgzMROq7T+7R3rcv+TPMdwk8rjIMeRiw2hFLwbrJ0w/v7/3wT
MESv3GfXbuT0huEedK7bLfqGMgtmqMeCNkoI7Rf3GO2xArGQ6Zc2rTd4L9+D5HHS
IPEixwFZS+Debc7pg3os0bKXEsqMtitvocClOAuPnXpCy04PK450UTr6ZVdirWhJ
Oq8SrSERQwqEJ4PMHybiDKwzSr6mcBURre3G71uTAp7h/DISLTpfVMadcB6eoLWr
/4fBqejAWg==
=wh5k
-----END PGP PUBLIC KEY BLOCK-----
`.trimStart(),
};

/**
 * Keys of the server vendors' repositories, by full fingerprint. Their material is not vendored here (it
 * was not obtainable offline with a fingerprint check), so cloud-init fetches them from the keyserver over
 * HTTPS (port 443) and gpg refuses any key whose fingerprint differs. A baked image (`verifier.ami.baked`)
 * needs neither.
 */
export const VENDOR_KEY_FINGERPRINTS = {
  mariadb: "177F4010FE56CA3336300305F1656F24C74CD1D8",
  mysql: "BCA43417C3B485DD128EC6D4B7B3B788A8D3785C",
} as const;

/** The keyserver of the vendor keys, over HTTPS so any egress that allows 443 reaches it. */
export const KEYSERVER = "hkps://keyserver.ubuntu.com:443";
