/*
    syncbridge: 01_sample_schema.sql
    The five tables of the sample clinic schema (docs/sample-schema.md), parents before children.
    A real clinic already has its own tables and skips this file.

    Targets: SQL Server 2017 (14.x) and later, every edition including Express, any database
    compatibility level from 100 up. Re-runnable: each object is created only when missing.
    Foreign keys have no cascades: the clinic's applications decide what a delete means.
*/
SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO

IF OBJECT_ID(N'dbo.tblPatients', N'U') IS NULL
BEGIN
    CREATE TABLE dbo.tblPatients (
        PersonID    int              IDENTITY(1, 1) NOT NULL,
        PatientName nvarchar(200)    NOT NULL,
        Phone       nvarchar(50)     NULL,
        DateOfBirth date             NULL,
        IsActive    bit              NOT NULL CONSTRAINT DF_tblPatients_IsActive DEFAULT (1),
        PatientGUID uniqueidentifier NOT NULL CONSTRAINT DF_tblPatients_PatientGUID DEFAULT (NEWID()),
        Notes       nvarchar(max)    NULL,
        DateAdded   datetime         NOT NULL CONSTRAINT DF_tblPatients_DateAdded DEFAULT (GETDATE()),
        CONSTRAINT PK_tblPatients PRIMARY KEY CLUSTERED (PersonID)
    );
END;
GO

IF OBJECT_ID(N'dbo.tblWork', N'U') IS NULL
BEGIN
    CREATE TABLE dbo.tblWork (
        WorkID        int           IDENTITY(1, 1) NOT NULL,
        PersonID      int           NOT NULL,
        TypeOfWork    nvarchar(100) NOT NULL,
        TotalRequired money         NULL,
        Currency      char(3)       NOT NULL CONSTRAINT DF_tblWork_Currency DEFAULT ('IQD'),
        StartDate     date          NULL,
        Finished      bit           NOT NULL CONSTRAINT DF_tblWork_Finished DEFAULT (0),
        AdditionTime  datetime2(3)  NOT NULL CONSTRAINT DF_tblWork_AdditionTime DEFAULT (SYSDATETIME()),
        CONSTRAINT PK_tblWork PRIMARY KEY CLUSTERED (WorkID),
        CONSTRAINT FK_tblWork_tblPatients FOREIGN KEY (PersonID) REFERENCES dbo.tblPatients (PersonID)
    );
    CREATE NONCLUSTERED INDEX IX_tblWork_PersonID ON dbo.tblWork (PersonID);
END;
GO

IF OBJECT_ID(N'dbo.tblAlignerSets', N'U') IS NULL
BEGIN
    CREATE TABLE dbo.tblAlignerSets (
        AlignerSetID       int               IDENTITY(1, 1) NOT NULL,
        WorkID             int               NOT NULL,
        SetSequence        int               NOT NULL,
        UpperAlignersCount int               NOT NULL CONSTRAINT DF_tblAlignerSets_UpperAlignersCount DEFAULT (0),
        LowerAlignersCount int               NOT NULL CONSTRAINT DF_tblAlignerSets_LowerAlignersCount DEFAULT (0),
        SetCost            decimal(12, 2)    NULL,
        IsActive           bit               NOT NULL CONSTRAINT DF_tblAlignerSets_IsActive DEFAULT (1),
        CreationDate       datetimeoffset(3) NOT NULL CONSTRAINT DF_tblAlignerSets_CreationDate DEFAULT (SYSDATETIMEOFFSET()),
        CONSTRAINT PK_tblAlignerSets PRIMARY KEY CLUSTERED (AlignerSetID),
        CONSTRAINT FK_tblAlignerSets_tblWork FOREIGN KEY (WorkID) REFERENCES dbo.tblWork (WorkID)
    );
    CREATE NONCLUSTERED INDEX IX_tblAlignerSets_WorkID ON dbo.tblAlignerSets (WorkID);
END;
GO

IF OBJECT_ID(N'dbo.tblAlignerBatches', N'U') IS NULL
BEGIN
    CREATE TABLE dbo.tblAlignerBatches (
        AlignerBatchID         int           IDENTITY(1, 1) NOT NULL,
        AlignerSetID           int           NOT NULL,
        BatchSequence          int           NOT NULL,
        UpperAlignerCount      int           NOT NULL CONSTRAINT DF_tblAlignerBatches_UpperAlignerCount DEFAULT (0),
        LowerAlignerCount      int           NOT NULL CONSTRAINT DF_tblAlignerBatches_LowerAlignerCount DEFAULT (0),
        Days                   int           NULL,
        ManufactureDate        date          NULL,
        DeliveredToPatientDate date          NULL,
        Notes                  nvarchar(500) NULL,
        LabelCode              varbinary(64) NULL,
        CONSTRAINT PK_tblAlignerBatches PRIMARY KEY CLUSTERED (AlignerBatchID),
        CONSTRAINT FK_tblAlignerBatches_tblAlignerSets FOREIGN KEY (AlignerSetID)
            REFERENCES dbo.tblAlignerSets (AlignerSetID)
    );
    CREATE NONCLUSTERED INDEX IX_tblAlignerBatches_AlignerSetID ON dbo.tblAlignerBatches (AlignerSetID);
END;
GO

-- NoteID is the clinic's local key and never leaves SQL Server; NoteUID is the sync key, which
-- is why it is UNIQUE and why the portal may create notes (it supplies its own NoteUID).
IF OBJECT_ID(N'dbo.tblAlignerNotes', N'U') IS NULL
BEGIN
    CREATE TABLE dbo.tblAlignerNotes (
        NoteID       int              IDENTITY(1, 1) NOT NULL,
        NoteUID      uniqueidentifier NOT NULL CONSTRAINT DF_tblAlignerNotes_NoteUID DEFAULT (NEWID()),
        AlignerSetID int              NOT NULL,
        NoteType     nvarchar(20)     NOT NULL,
        NoteText     nvarchar(max)    NOT NULL,
        CreatedAt    datetime2(3)     NOT NULL CONSTRAINT DF_tblAlignerNotes_CreatedAt DEFAULT (SYSDATETIME()),
        IsEdited     bit              NOT NULL CONSTRAINT DF_tblAlignerNotes_IsEdited DEFAULT (0),
        EditedAt     datetime2(3)     NULL,
        IsRead       bit              NOT NULL CONSTRAINT DF_tblAlignerNotes_IsRead DEFAULT (0),
        CONSTRAINT PK_tblAlignerNotes PRIMARY KEY CLUSTERED (NoteID),
        CONSTRAINT UQ_tblAlignerNotes_NoteUID UNIQUE NONCLUSTERED (NoteUID),
        CONSTRAINT CK_tblAlignerNotes_NoteType CHECK (NoteType IN (N'Lab', N'Doctor')),
        CONSTRAINT FK_tblAlignerNotes_tblAlignerSets FOREIGN KEY (AlignerSetID)
            REFERENCES dbo.tblAlignerSets (AlignerSetID)
    );
    CREATE NONCLUSTERED INDEX IX_tblAlignerNotes_AlignerSetID ON dbo.tblAlignerNotes (AlignerSetID);
END;
GO
