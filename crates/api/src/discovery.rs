//! Discovery documents built from the catalogue: `/api`, `/apis`, `/api/v1`,
//! `/apis/<group>/<version>`, and the aggregated formats (apidiscovery.k8s.io v2 and v2beta1).
