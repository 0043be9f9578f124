-- Cards and their lifecycle come with the cards issue; the card number sequence is
-- reserved now so that numbers never restart.
CREATE SEQUENCE card_number_seq;
