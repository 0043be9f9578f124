-- The population catalogue: data that the university extends without code.
CREATE TABLE populations (
    code                  text PRIMARY KEY,
    label                 text    NOT NULL,
    supann_population     text    NOT NULL,
    agreement_required    boolean NOT NULL,
    default_duration_days integer NOT NULL CHECK (default_duration_days > 0),
    max_duration_days     integer NOT NULL CHECK (max_duration_days >= default_duration_days)
);

INSERT INTO populations VALUES
    ('CO_ACCREDITED',         'Students of a partner institution on a co-accredited diploma',        'AHH',   true,  365, 400),
    ('RECTORAT_CAPES_AGREG',  'Teachers preparing the internal CAPES/Agrégation (rectorat)',          'AGG',   false, 300, 366),
    ('RECTORAT_PAF',          'Teachers on individual applications through the PAF',                  'AGG',   false, 300, 366),
    ('RECTORAT_C2I2E',        'C2i / C2i2e certificate trainees',                                     'AGG',   false, 300, 366),
    ('IFSI',                  'Nursing-school (IFSI) students',                                       'AX',    false, 365, 400),
    ('VAE',                   'Candidates supported through a VAE',                                   'AX',    false, 365, 730),
    ('SHORT_COURSE_SUFA',     'Short non-degree courses of the continuing-education service (SUFA)',  'AGG',   false, 90,  366),
    ('SHORT_COURSE_RECTORAT', 'Short non-degree courses for the rectorat',                            'AGG',   false, 90,  366),
    ('VISITING_DOCTORAL',     'Visiting doctoral students',                                           'RHJCF', false, 180, 730);

-- Agreements (conventions) with partner institutions, owned by the legal directorate.
CREATE TABLE agreements (
    agreement_id   uuid PRIMARY KEY,
    partner_name   text    NOT NULL,
    partner_uai    text,
    populations    text[]  NOT NULL,
    start_date     date    NOT NULL,
    end_date       date    NOT NULL CHECK (end_date >= start_date),
    head_count_cap integer NOT NULL DEFAULT 0,
    options        text[]  NOT NULL DEFAULT '{}',
    payer          text    NOT NULL,
    version        bigint  NOT NULL DEFAULT 1,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Hosted-learner numbers: a numbering of their own, never an Apogée number.
CREATE SEQUENCE learner_number_seq;

CREATE TABLE persons (
    learner_id     uuid PRIMARY KEY,
    learner_number text   NOT NULL UNIQUE,
    login          text   NOT NULL UNIQUE,
    family_name    text   NOT NULL,
    birth_name     text,
    given_names    text   NOT NULL,
    birth_date     date   NOT NULL,
    email          text   NOT NULL,
    ine            text,
    phone          text,
    -- Normalised birth name + first given name + birth date: the same key is the same person.
    match_key      text   NOT NULL,
    version        bigint NOT NULL DEFAULT 1,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX persons_ine ON persons (ine) WHERE ine IS NOT NULL;
CREATE INDEX persons_match_key ON persons (match_key);

-- Every login ever given, so that none is ever reused, even after a purge.
CREATE TABLE logins (
    login      text PRIMARY KEY,
    learner_id uuid NOT NULL,
    given_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE stays (
    stay_id        uuid PRIMARY KEY,
    learner_id     uuid NOT NULL REFERENCES persons (learner_id),
    population     text NOT NULL REFERENCES populations (code),
    sponsor_unit   text NOT NULL,
    sponsor_login  text,
    agreement_id   uuid REFERENCES agreements (agreement_id),
    start_date     date NOT NULL,
    end_date       date NOT NULL CHECK (end_date >= start_date),
    cancelled      boolean NOT NULL DEFAULT false,
    payment_status text NOT NULL DEFAULT 'not_required',
    end_reason     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- Registering the same stay twice (an import run again) must not create a second one.
    UNIQUE (learner_id, population, start_date)
);

CREATE INDEX stays_learner ON stays (learner_id);
