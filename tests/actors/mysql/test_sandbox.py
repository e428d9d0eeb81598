"""The dump rewriter that restore streams a dump through (actors/mysql/sandbox.py): the same result however
the stream is cut, the database lines renamed, definers judged, stored code held back with its settings."""
from __future__ import annotations

import pytest

from actors.mysql.sandbox import Definers, DumpRewriter
from core.component import PermanentError

# Abridged from mariadb-dump 10.11 --routines --triggers --events: a view, a trigger, an event, a function.
DUMP = b"""/*!40103 SET TIME_ZONE='+00:00' */;
CREATE DATABASE /*!32312 IF NOT EXISTS*/ `src` /*!40100 DEFAULT CHARACTER SET utf8mb4 */;
USE `src`;
INSERT INTO `t` VALUES
(1,'USE `other`; CREATE DATABASE x'),
(2,'/*!50013 DEFINER=`a`@`b` */');
/*!50003 SET sql_mode              = 'STRICT_TRANS_TABLES' */ ;
DELIMITER ;;
/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ /*!50003 TRIGGER tr AFTER DELETE ON t FOR EACH ROW INSERT INTO audit (doc_id) VALUES (OLD.id)
*/;;
DELIMITER ;
/*!50003 SET sql_mode              = @saved_sql_mode */ ;
DELIMITER ;;
/*!50003 SET time_zone             = 'SYSTEM' */ ;;
/*!50106 CREATE*/ /*!50117 DEFINER=`gone`@`%`*/ /*!50106 EVENT `ev` ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM audit */ ;;
/*!50003 SET time_zone             = @saved_time_zone */ ;;
DELIMITER ;
DELIMITER ;;
CREATE DEFINER=`root`@`localhost` FUNCTION `f`(k INT) RETURNS int(11)
    READS SQL DATA
RETURN (SELECT COUNT(*) FROM t WHERE id = k) ;;
DELIMITER ;
USE `src`;
/*!50001 CREATE ALGORITHM=MERGE */
/*!50013 DEFINER=`root`@`localhost` SQL SECURITY DEFINER */
/*!50001 VIEW `v1` AS select `t`.`id` AS `id` from `t` */;
-- Dump completed
"""


def rewrite(dump: bytes, chunk: int, exists=lambda user, host: False) -> tuple[bytes, DumpRewriter]:
    rewriter = DumpRewriter("scratch_1", Definers(("root", "localhost"), exists))
    out = [rewriter.feed(dump[start:start + chunk]) for start in range(0, len(dump), chunk)]
    return b"".join(out) + rewriter.finish(), rewriter


@pytest.mark.parametrize("chunk", [1, 5, 64, 1 << 20])
def test_a_dump_is_rewritten_the_same_however_it_is_cut(chunk):
    whole, _ = rewrite(DUMP, 1 << 20)
    assert rewrite(DUMP, chunk)[0] == whole
    assert whole.count(b"\n") == DUMP.count(b"\n")  # the client's line numbers stay the dump's
    assert b"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `scratch_1` /*!40100" in whole
    assert whole.count(b"USE `scratch_1`;") == 2 and b"USE `src`" not in whole
    assert b"'USE `other`; CREATE DATABASE x'" in whole and b"'/*!50013 DEFINER=`a`@`b` */'" in whole  # data
    assert b"/*!50013 DEFINER=CURRENT_USER SQL SECURITY DEFINER */\n/*!50001 VIEW `v1`" in whole
    assert b"TRIGGER" not in whole and b"EVENT `ev`" not in whole and b"FUNCTION" not in whole  # held back


def test_definers_are_judged_and_stored_code_keeps_the_settings_the_dump_set_for_it():
    _, rewriter = rewrite(DUMP, 7)
    assert rewriter.source == "src"
    assert rewriter.definers.kept == {("TRIGGER", "tr"): ("root", "localhost"), ("EVENT", "ev"): ("root", "localhost"),
                                      ("FUNCTION", "f"): ("root", "localhost"), ("VIEW", "v1"): ("root", "localhost")}
    assert rewriter.definers.missing == {("EVENT", "ev"): "gone@%"}
    trigger, event, function = rewriter.code
    assert trigger.statement.startswith("/*!50003 CREATE*/ /*!50017 DEFINER=CURRENT_USER*/ /*!50003 TRIGGER tr ")
    assert trigger.sql_mode == "STRICT_TRANS_TABLES" and trigger.time_zone == "+00:00"
    assert event.sql_mode is None and event.time_zone == "SYSTEM"
    assert function.statement.endswith("RETURN (SELECT COUNT(*) FROM t WHERE id = k) ")


def test_an_existing_account_other_than_the_restoring_one_as_definer_is_refused():
    with pytest.raises(PermanentError, match=r"EVENT `ev` names DEFINER 'gone'@'%', an existing account"):
        rewrite(DUMP, 64, exists=lambda user, host: True)


def test_a_second_database_in_the_dump_is_refused():
    with pytest.raises(PermanentError, match="names database 'other' besides 'src'"):
        rewrite(DUMP.replace(b"USE `src`;\n/*!50001", b"USE `other`;\n/*!50001"), 64)


def test_load_file_outside_a_string_is_refused_and_inside_one_is_data():
    assert rewrite(DUMP.replace(b"(2,'/*!", b"(2,'load_file(x) /*!"), 64)[0]
    with pytest.raises(PermanentError, match="calls LOAD_FILE"):
        rewrite(DUMP.replace(b"(2,'/*!", b"(2,Load_File ('/etc/passwd'),'/*!"), 64)


def test_a_statement_left_unterminated_at_the_end_still_reaches_the_client():
    tail = b"DELIMITER ;;\nCREATE DEFINER=`root`@`localhost` PROCEDURE `p`()\nSELECT 1\n"
    out, rewriter = rewrite(DUMP + tail, 64)
    assert out.endswith(tail) and len(rewriter.code) == 3  # as written: the loading account may not run it


def test_stored_code_written_with_other_spacing_and_case_is_held_back_too():
    dump = DUMP.replace(b"TRIGGER tr AFTER DELETE ON t FOR EACH ROW", b"TRIGGER `tr`\n  after delete on `t`\n  for each row")
    out, rewriter = rewrite(dump, 64)
    assert [code.statement.split("TRIGGER")[1].split()[0] for code in rewriter.code[:1]] == ["`tr`"]
    assert b"TRIGGER" not in out
